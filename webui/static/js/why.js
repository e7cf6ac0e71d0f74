// "Why?" on a result card: where the similarity of the query and that result comes
// from (POST /api/v1/explain), drawn as heatmaps over both photos. Each map covers the
// model's input crop of its photo (the answer's `box`, in that photo's pixels); only
// positive contributions are coloured, scaled to the largest of the two maps, so the
// two overlays can be compared. One panel serves every card: it opens below the row of
// the card whose button was pressed, and that button says so (aria-expanded).

import { api, ApiError } from "./api.js";

const SIDE = 240; // CSS pixels of each drawn photo's longer side

export class WhyPanel {
  // panel: the <li> that holds the explanation (moved into the results list when shown).
  constructor(panel) {
    this.panel = panel;
    this.caption = panel.querySelector(".why-caption");
    this.queryCanvas = panel.querySelector("canvas.why-query");
    this.resultCanvas = panel.querySelector("canvas.why-result");
    this.button = null; // the card button the panel is open for
    this.sequence = 0; // answers for a panel closed or moved since are dropped
  }

  // Close the panel when it is open for `button`, else explain that result.
  // request(resultItemId) builds the API request: the same query as the search.
  // queryImage: the query's drawn preview (<img>), or null when there is none.
  async toggle(button, hit, request, queryImage) {
    const open = this.button === button;
    this.close();
    if (open) return;
    this.button = button;
    button.setAttribute("aria-expanded", "true");
    button.closest("li").after(this.panel);
    this.panel.hidden = false;
    this.panel.dataset.state = "loading";
    this.caption.textContent = "Working out where the similarity comes from…";
    const mine = ++this.sequence;
    try {
      const [{ body }, resultImage] = await Promise.all([
        api("/api/v1/explain", request(hit.item_id)),
        loaded(hit.image_url),
      ]);
      if (mine !== this.sequence) return;
      const peak = Math.max(positivePeak(body.query_heatmap), positivePeak(body.result_heatmap));
      draw(this.queryCanvas, queryImage, body.query_image, body.query_heatmap, peak);
      draw(this.resultCanvas, resultImage, body.result_image, body.result_heatmap, peak);
      const name = hit.title || hit.product_id || `item ${hit.item_id.slice(0, 12)}`;
      this.caption.textContent =
        `${name}: score ${body.score.toFixed(3)} (${body.method}). ` +
        "The warmer a part of a photo, the more of the score it gives.";
      this.panel.dataset.state = "done";
    } catch (error) {
      if (mine !== this.sequence) return;
      const problem = error instanceof ApiError ? error : new ApiError("problem", String(error));
      this.caption.textContent = `No explanation: ${problem.message}`;
      this.panel.dataset.state = "error";
    }
  }

  close() {
    this.sequence++;
    if (this.button) this.button.setAttribute("aria-expanded", "false");
    this.button = null;
    this.panel.hidden = true;
    delete this.panel.dataset.state;
  }
}

// An image of the same origin, decoded; null when it does not load.
async function loaded(url) {
  const img = new Image();
  img.src = url;
  try {
    await img.decode();
    return img;
  } catch {
    return null;
  }
}

function positivePeak(heatmap) {
  return Math.max(0, ...heatmap.flat());
}

// The photo (or a grey frame when there is none) scaled to SIDE, and its heatmap over
// the crop the model saw, upsampled smoothly from the feature-map cells.
function draw(canvas, img, frame, heatmap, peak) {
  const scale = SIDE / Math.max(frame.width, frame.height);
  canvas.width = Math.max(1, Math.round(frame.width * scale));
  canvas.height = Math.max(1, Math.round(frame.height * scale));
  const ctx = canvas.getContext("2d");
  if (img) {
    ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
  } else {
    ctx.fillStyle = "#d9dde3";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
  }
  const rows = heatmap.length;
  const cols = rows ? heatmap[0].length : 0;
  if (!rows || !cols) return;
  const cells = document.createElement("canvas");
  cells.width = cols;
  cells.height = rows;
  const cellsCtx = cells.getContext("2d");
  const pixels = cellsCtx.createImageData(cols, rows);
  heatmap.flat().forEach((value, i) => {
    const t = peak > 0 ? Math.max(0, value) / peak : 0;
    const [r, g, b] = heat(t);
    pixels.data.set([r, g, b, Math.round(200 * t)], i * 4);
  });
  cellsCtx.putImageData(pixels, 0, 0);
  const [x0, y0, x1, y1] = frame.box.map((v) => v * scale);
  ctx.imageSmoothingEnabled = true;
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(cells, x0, y0, x1 - x0, y1 - y0);
  ctx.setLineDash([4, 3]);
  ctx.strokeStyle = "rgb(255 255 255 / 0.8)";
  ctx.strokeRect(x0 + 0.5, y0 + 0.5, x1 - x0 - 1, y1 - y0 - 1);
}

// Dark red → red → yellow: warm for where the score comes from.
function heat(t) {
  return [Math.round(120 + 135 * Math.min(1, t * 2)), Math.round(255 * Math.max(0, t * 2 - 1)), 0];
}
