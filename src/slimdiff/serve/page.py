"""The page `slimdiff serve` shows: one self-contained HTML file (no external scripts, fonts or styles, so it
works offline), talking to `/api/info` and `/api/generate`."""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>slimdiff</title>
<style>
  body { font: 15px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
  form { display: flex; flex-wrap: wrap; gap: 0.8em 1.4em; align-items: end; margin-bottom: 1em; }
  label { display: flex; flex-direction: column; font-size: 0.85em; color: #555; }
  input, select, button { font: inherit; padding: 0.25em 0.4em; }
  input[type=number] { width: 6em; }
  button { padding: 0.4em 1.2em; }
  #error { color: #a00; min-height: 1.4em; }
  #results { display: flex; flex-wrap: wrap; gap: 1.5em; }
  figure { margin: 0; }
  figcaption { font-size: 0.85em; color: #555; }
  img.result { width: 192px; height: 192px; image-rendering: pixelated; border: 1px solid #ccc; margin: 2px; }
  .hidden { display: none; }
</style>
</head>
<body>
<h1>slimdiff</h1>
<p id="about">Loading…</p>
<form id="form" onsubmit="return false">
  <label>solver <select id="sampler"></select></label>
  <label>steps <input id="steps" type="number" value="20" min="1"></label>
  <label>seed <input id="seed" type="number" value="0" min="0"></label>
  <label>images <input id="n" type="number" value="1" min="1"></label>
  <label id="label-box" class="hidden">class label <input id="label" type="number" value="0" min="0"></label>
  <label id="prompt-box" class="hidden">prompt <input id="prompt" type="text" value=""></label>
  <label id="negative-box" class="hidden">negative prompt <input id="negative" type="text" value=""></label>
  <label id="guidance-box" class="hidden">guidance w <input id="guidance" type="number" step="0.5" placeholder="off"></label>
  <label id="stitch-box" class="hidden">stitch: student fraction
    <input id="stitch" type="number" step="0.05" min="0" max="1" value="0.5"></label>
  <button id="generate" type="button" disabled>Generate</button>
</form>
<div id="status"></div>
<div id="error" role="alert"></div>
<div id="results"></div>
<script>
const $ = (id) => document.getElementById(id);
let info = null;
async function load() {
  info = await (await fetch("/api/info")).json();
  for (const name of info.samplers) {
    const option = document.createElement("option");
    option.value = option.textContent = name;
    $("sampler").appendChild(option);
  }
  $("about").textContent = "model: " + info.model + (info.teacher ? " · teacher: " + info.teacher : "");
  if (info.classes) $("label-box").classList.remove("hidden");
  if (info.text) { $("prompt-box").classList.remove("hidden"); $("negative-box").classList.remove("hidden"); }
  if (info.guidance) $("guidance-box").classList.remove("hidden");
  if (info.teacher) { $("stitch-box").classList.remove("hidden"); $("sampler").value = "ddim"; }
  $("generate").disabled = false;
}
async function generate() {
  $("generate").disabled = true;
  $("error").textContent = "";
  $("status").textContent = "generating…";
  const params = {};
  for (const id of ["sampler", "steps", "seed", "n", "label", "guidance", "stitch", "prompt", "negative"]) params[id] = $(id).value;
  if (!info.classes) delete params.label;
  if (!info.guidance) delete params.guidance;
  if (!info.text) { delete params.prompt; delete params.negative; }
  if (!info.teacher) delete params.stitch;
  try {
    const response = await fetch("/api/generate", {method: "POST", headers: {"Content-Type": "application/json"},
                                                    body: JSON.stringify(params)});
    const answer = await response.json();
    if (!response.ok) { $("error").textContent = answer.error; $("status").textContent = ""; return; }
    $("results").replaceChildren();
    for (const result of answer.results) {
      const figure = document.createElement("figure");
      for (const src of result.images) {
        const img = document.createElement("img");
        img.className = "result"; img.src = src; img.alt = result.name;
        figure.appendChild(img);
      }
      const caption = document.createElement("figcaption");
      caption.className = "seconds";
      caption.textContent = result.name + ": " + result.seconds.toFixed(2) + " s";
      figure.appendChild(caption);
      $("results").appendChild(figure);
    }
    $("status").textContent = "seed " + answer.seed + ", " + answer.num_inference_steps + " steps of " + answer.sampler;
  } catch (e) {
    $("error").textContent = "the server did not answer: " + e;
    $("status").textContent = "";
  } finally {
    $("generate").disabled = false;
  }
}
$("generate").addEventListener("click", generate);
load().catch((e) => { $("error").textContent = "cannot reach the server: " + e; });
</script>
</body>
</html>
"""
