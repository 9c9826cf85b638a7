// Inlined by kdlib_assets.py into pages that hold widgets, before the widget manager loads.
// @jupyter-widgets/html-manager typesets widget labels through MathJax 2's API,
// `MathJax.Hub.Queue(["Typeset", MathJax.Hub, element])`, whenever `window.MathJax` exists; the book
// loads MathJax 3, which has no `Hub`, so every labelled widget threw a TypeError. This gives
// whatever object `window.MathJax` holds (Sphinx's configuration, then MathJax 3 itself, which
// replaces it when it loads) a `Hub` whose `Queue` typesets with MathJax 3 once it is ready.
(function () {
  var queued = [];
  function flush(mathjax) {
    mathjax.startup.promise.then(function () { return mathjax.typesetPromise(queued.splice(0)); });
  }
  var hub = {
    Queue: function (job) {
      var mathjax = window.MathJax;
      queued.push(job[2]);
      if (mathjax && mathjax.typesetPromise && mathjax.startup && mathjax.startup.promise) flush(mathjax);
    }
  };
  function adopt(value) {
    if (!value || value.Hub === hub) return value;
    value.Hub = hub;
    if (!value.version) {  // a configuration object: MathJax 3 calls startup.ready when loaded
      var startup = value.startup = value.startup || {};
      var ready = startup.ready;
      startup.ready = function () {
        if (ready) ready(); else window.MathJax.startup.defaultReady();
        flush(window.MathJax);
      };
    }
    return value;
  }
  var current = adopt(window.MathJax || {});
  Object.defineProperty(window, "MathJax", {
    configurable: true, enumerable: true,
    get: function () { return current; },
    set: function (value) { current = adopt(value); }
  });
})();
