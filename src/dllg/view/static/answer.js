// Which expert wrote each token of a fused answer. The page is built token by token through addToken(), so
// a static file (which replays its recorded tokens) and a live page (fed as tokens arrive) share this code.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const LIGHTEST = 94; // background lightness (%) of a token on which the experts tie
const DARKEST = 60; // ... and of one that a single expert writes alone
const Y_MARGIN = 0.05; // of the plot's height, above and below the weights' range
// experts: [{name, hue}]; count: tokens so far; yMin/yMax: the plot's range; sums/wins: per expert, legend
const state = {
  experts: [], count: 0, yMin: 0, yMax: 1, lines: [], grid: [], cursor: null, sums: [], wins: [],
};

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text; // text, never markup: tokens are shown as written
  return node;
}

function svgElement(tag, attributes) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  return node;
}

function expertColour(expert, dominance) {
  const lightness = LIGHTEST - (LIGHTEST - DARKEST) * dominance;
  return `hsl(${state.experts[expert].hue}, 75%, ${lightness}%)`;
}

function lineColour(expert) {
  return `hsl(${state.experts[expert].hue}, 70%, 40%)`;
}

// The expert with the largest weight, and how far it dominates: 0 when the (non-negative parts of the)
// weights are all equal, 1 when it holds all of them.
function dominantExpert(weights) {
  let best = 0;
  weights.forEach((w, k) => { if (w > weights[best]) best = k; });
  const positive = weights.map((w) => Math.max(w, 0));
  const total = positive.reduce((a, b) => a + b, 0);
  if (weights.length === 1) return { expert: best, dominance: 1 };
  if (total <= 0) return { expert: best, dominance: 0 };
  const even = 1 / weights.length;
  return { expert: best, dominance: Math.min(1, Math.max(0, (positive[best] / total - even) / (1 - even))) };
}

function formatWeight(w) {
  return Number(w).toFixed(3);
}

function initAnswerPage(config) {
  state.experts = config.experts;
  state.sums = config.experts.map(() => 0);
  state.wins = config.experts.map(() => 0);
  document.getElementById("title").textContent = config.title;
  document.title = config.title;
  const meta = document.getElementById("meta");
  config.meta.forEach(([key, value], i) => {
    if (i > 0) meta.append(element("span", "sep", "·"));
    meta.append(element("span", "key", `${key}: `));
    const shown = element("span", "value", String(value));
    if (key === "verdict") shown.classList.add(`verdict-${String(value).split(/[^a-z]/)[0]}`);
    meta.append(shown);
  });
  if (config.prompt !== null && config.prompt !== undefined) {
    document.getElementById("prompt").textContent = config.prompt;
    document.getElementById("prompt-section").hidden = false;
  }
  const legend = document.getElementById("legend");
  config.experts.forEach((expert, k) => {
    const item = element("li");
    item.dataset.expert = k;
    const swatch = element("span", "swatch");
    swatch.style.background = expertColour(k, 1);
    item.append(swatch, element("span", "name", expert.name), element("span", "dim stats"));
    legend.append(item);
  });
  const plot = document.getElementById("plot");
  state.grid = [0, 1, 2].map(() => plot.appendChild(svgElement("line", { class: "grid" })));
  state.lines = config.experts.map((_, k) => {
    const line = svgElement("polyline", { class: "weight-line", "data-expert": k, stroke: lineColour(k) });
    return plot.appendChild(line);
  });
  state.cursor = plot.appendChild(svgElement("line", { class: "cursor", visibility: "hidden" }));
  redrawScale();
}

function redrawScale() {
  const width = Math.max(state.count, 1);
  const plot = document.getElementById("plot");
  // y is flipped (a point is at -weight) so that larger weights are higher up; the margin (as the CSS's
  // y-axis labels assume) keeps lines at 0 and 1 off the border
  const margin = Y_MARGIN * (state.yMax - state.yMin) / (1 - 2 * Y_MARGIN);
  const top = -state.yMax - margin;
  plot.setAttribute("viewBox", `0 ${top} ${width} ${state.yMax - state.yMin + 2 * margin}`);
  const levels = [state.yMax, (state.yMax + state.yMin) / 2, state.yMin];
  state.grid.forEach((line, i) => {
    for (const [name, value] of Object.entries({ x1: 0, x2: width, y1: -levels[i], y2: -levels[i] })) {
      line.setAttribute(name, value);
    }
  });
  ["y-max", "y-mid", "y-min"].forEach((id, i) => {
    document.getElementById(id).textContent = formatWeight(levels[i]);
  });
  document.getElementById("x-max").textContent = `${state.count}`;
  document.getElementById("token-count").textContent = `(${state.count} tokens)`;
}

function showCursor(index) {
  state.cursor.setAttribute("x1", index + 0.5);
  state.cursor.setAttribute("x2", index + 0.5);
  state.cursor.setAttribute("y1", -state.yMax);
  state.cursor.setAttribute("y2", -state.yMin);
  state.cursor.setAttribute("visibility", index === null ? "hidden" : "visible");
}

// Append one token: its text, coloured by the dominant expert, and each expert's weight to the plot.
function addToken(text, weights) {
  if (weights.length !== state.experts.length) {
    throw new Error(`token ${state.count} has ${weights.length} weights for ${state.experts.length} experts`);
  }
  const index = state.count;
  const { expert, dominance } = dominantExpert(weights);
  const span = element("span", `token expert-${expert}`, text);
  span.dataset.index = index;
  span.dataset.expert = expert;
  span.dataset.dominance = dominance.toFixed(3);
  span.style.background = expertColour(expert, dominance);
  span.title = state.experts.map((e, k) => `${e.name}: ${formatWeight(weights[k])}`).join("\n");
  span.addEventListener("mouseenter", () => { span.classList.add("cursor"); showCursor(index); });
  span.addEventListener("mouseleave", () => { span.classList.remove("cursor"); showCursor(null); });
  document.getElementById("answer").append(span);

  state.count += 1;
  state.yMin = Math.min(state.yMin, ...weights);
  state.yMax = Math.max(state.yMax, ...weights);
  const plot = document.getElementById("plot");
  weights.forEach((w, k) => {
    const point = plot.createSVGPoint();
    point.x = index + 0.5;
    point.y = -w;
    state.lines[k].points.appendItem(point);
    state.sums[k] += w;
  });
  state.wins[expert] += 1;
  document.querySelectorAll("#legend li").forEach((item, k) => {
    const mean = formatWeight(state.sums[k] / state.count);
    const stats = ` writes ${state.wins[k]} of ${state.count} tokens, mean weight ${mean}`;
    item.querySelector(".stats").textContent = stats;
  });
  redrawScale();
}

// Remove every token (the legend's counts and the plot too): a live page shows its next answer in place.
function clearTokens() {
  state.count = 0;
  state.yMin = 0;
  state.yMax = 1;
  state.sums = state.experts.map(() => 0);
  state.wins = state.experts.map(() => 0);
  state.lines.forEach((line) => line.points.clear());
  document.getElementById("answer").replaceChildren();
  document.querySelectorAll("#legend .stats").forEach((stats) => { stats.textContent = ""; });
  redrawScale();
}

// A static page carries its recorded answer as JSON; a live page has none and calls addToken itself.
document.addEventListener("DOMContentLoaded", () => {
  const data = document.getElementById("answer-data");
  if (!data || !data.textContent.trim()) return;
  const answer = JSON.parse(data.textContent);
  initAnswerPage(answer);
  answer.tokens.forEach(([text, weights]) => addToken(text, weights));
});
