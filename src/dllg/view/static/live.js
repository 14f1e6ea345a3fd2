// The live page of `dllg serve`: a prompt goes to the server's chat endpoint as a stream, and each token is
// drawn by addToken() as it arrives, as a static answer page draws its recorded tokens (answer.js).
"use strict";

const live = { busy: false };

function setStatus(text, state) {
  const status = document.getElementById("live-status");
  status.textContent = text;
  status.className = state === "error" ? "error" : "dim";
  document.body.dataset.state = state;
}

// Server-sent events: "data: {json}" blocks separated by a blank line; the stream ends with "data: [DONE]".
async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    const blocks = buffer.split("\n\n");
    buffer = blocks.pop();
    for (const block of blocks) {
      const data = block.replace(/^data: /, "");
      if (data !== "[DONE]") onEvent(JSON.parse(data));
    }
  }
}

async function ask(event) {
  event.preventDefault();
  if (live.busy) return;
  const config = JSON.parse(document.getElementById("live-config").textContent);
  const prompt = document.getElementById("prompt-input").value;
  clearTokens();
  document.getElementById("prompt").textContent = prompt;
  document.getElementById("prompt-section").hidden = false;
  live.busy = true;
  document.getElementById("ask").disabled = true;
  setStatus("generating…", "running");
  const request = {
    model: config.model,
    messages: [{ role: "user", content: prompt }],
    stream: true,
    dllg_weights: true,
    max_tokens: Number(document.getElementById("max-tokens").value),
    temperature: Number(document.getElementById("temperature").value),
  };
  try {
    const response = await fetch(config.endpoint, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(request),
    });
    if (!response.ok) throw new Error((await response.json()).error.message);
    let finish = null;
    await readEvents(response, (chunk) => {
      if (chunk.error) throw new Error(chunk.error.message);
      for (const choice of chunk.choices) {
        if (choice.dllg) choice.dllg.tokens.forEach((t) => addToken(t.token, t.weights));
        if (choice.finish_reason) finish = choice.finish_reason;
      }
    });
    setStatus(`done: ${document.querySelectorAll("#answer .token").length} tokens, finish ${finish}`, "done");
  } catch (error) {
    setStatus(`error: ${error.message}`, "error");
  } finally {
    live.busy = false;
    document.getElementById("ask").disabled = false;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("ask-form");
  form.addEventListener("submit", ask);
  document.getElementById("prompt-input").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) form.requestSubmit();
  });
});
