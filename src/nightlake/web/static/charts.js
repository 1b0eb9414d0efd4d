// Draws every chart of the page from the Vega-Lite spec the server put beside it.
// Runs under the app's Content-Security-Policy: Vega evaluates expressions with its
// interpreter (ast: true), never with new Function, and no style element is injected.
"use strict";

function drawChart(figure) {
  const spec = JSON.parse(figure.querySelector("script.chart-spec").textContent);
  const view = figure.querySelector(".chart-view");
  const options = {
    mode: "vega-lite", // the specs carry no $schema URL: nothing on a page points elsewhere
    renderer: "svg",
    ast: true,
    actions: false,
    defaultStyle: false,
    loader: { target: "_self" },
    tooltip: { disableDefaultStyle: true },
  };
  return vegaEmbed(view, spec, options).then(
    () => { figure.dataset.rendered = "true"; },
    (error) => { figure.dataset.rendered = "error"; console.error(error); },
  );
}

document.querySelectorAll("figure.chart[data-chart]").forEach(drawChart);
