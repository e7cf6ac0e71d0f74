// A box dragged on the query preview: the region of the photo to search by.
// Boxes are kept in the photo's own pixels (what the API's `box` means), converted
// from the preview's CSS pixels through naturalWidth/naturalHeight, and scaled on to
// the original when the preview shows a smaller copy of it (an item's thumbnail).

export const MIN_SIDE = 16; // the API's smallest box, in photo pixels
const CLICK = 4; // CSS pixels: a shorter drag is a click, not a box

const clamp = (value, low, high) => Math.min(high, Math.max(low, value));

export class RegionPicker {
  // img: the preview <img> (object-fit: contain); overlay: an absolutely placed element
  // in the same positioned parent; onPick(box) and onTooSmall() report a finished drag.
  constructor(img, overlay, { onPick, onTooSmall }) {
    this.img = img;
    this.overlay = overlay;
    this.onPick = onPick;
    this.onTooSmall = onTooSmall;
    this.box = null; // [x0, y0, x1, y1] in photo pixels, or null
    this.size = null; // the photo's [width, height]; null: not known, no dragging
    this.start = null; // the drag's first corner, CSS pixels inside the drawn image
    img.addEventListener("pointerdown", (event) => this.down(event));
    img.addEventListener("pointermove", (event) => this.move(event));
    img.addEventListener("pointerup", (event) => this.up(event));
    img.addEventListener("pointercancel", () => this.cancel());
    img.addEventListener("load", () => this.draw());
    window.addEventListener("resize", () => this.draw());
  }

  // The photo's size in pixels; "natural" when the preview is the photo itself.
  setSize(size) {
    this.size = size;
    this.draw();
  }

  show(box) {
    this.box = box;
    this.draw();
  }

  clear() {
    this.show(null);
  }

  photoSize() {
    if (this.size === "natural") return [this.img.naturalWidth, this.img.naturalHeight];
    return this.size;
  }

  // Where the photo is drawn inside the <img> box (object-fit: contain letterboxes it).
  frame() {
    const rect = this.img.getBoundingClientRect();
    const { naturalWidth: width, naturalHeight: height } = this.img;
    if (!width || !height || !rect.width || !rect.height) return null;
    const scale = Math.min(rect.width / width, rect.height / height);
    const shown = { width: width * scale, height: height * scale };
    return {
      left: rect.left + (rect.width - shown.width) / 2,
      top: rect.top + (rect.height - shown.height) / 2,
      ...shown,
    };
  }

  point(event, frame) {
    return [
      clamp(event.clientX - frame.left, 0, frame.width),
      clamp(event.clientY - frame.top, 0, frame.height),
    ];
  }

  down(event) {
    const frame = this.frame();
    if (event.button !== 0 || !frame || !this.photoSize()) return;
    event.preventDefault();
    this.img.setPointerCapture(event.pointerId);
    this.start = this.point(event, frame);
  }

  move(event) {
    if (!this.start) return;
    const frame = this.frame();
    if (frame) this.place(frame, this.start, this.point(event, frame));
  }

  up(event) {
    if (!this.start) return;
    const frame = this.frame();
    const start = this.start;
    this.start = null;
    if (!frame) return this.draw();
    const end = this.point(event, frame);
    if (Math.abs(end[0] - start[0]) < CLICK && Math.abs(end[1] - start[1]) < CLICK) {
      return this.draw(); // a click keeps the box there is
    }
    const [width, height] = this.photoSize();
    const sx = width / frame.width;
    const sy = height / frame.height;
    const box = [
      clamp(Math.floor(Math.min(start[0], end[0]) * sx), 0, width),
      clamp(Math.floor(Math.min(start[1], end[1]) * sy), 0, height),
      clamp(Math.ceil(Math.max(start[0], end[0]) * sx), 0, width),
      clamp(Math.ceil(Math.max(start[1], end[1]) * sy), 0, height),
    ];
    if (box[2] - box[0] < MIN_SIDE || box[3] - box[1] < MIN_SIDE) {
      this.draw();
      this.onTooSmall();
      return;
    }
    this.show(box);
    this.onPick(box);
  }

  cancel() {
    this.start = null;
    this.draw();
  }

  // The overlay over the CSS-pixel rectangle from corner a to corner b of the drawn photo.
  place(frame, a, b) {
    const origin = this.img.parentElement.getBoundingClientRect(); // positioned: the overlay's
    const style = this.overlay.style;
    style.left = `${frame.left - origin.left + Math.min(a[0], b[0])}px`;
    style.top = `${frame.top - origin.top + Math.min(a[1], b[1])}px`;
    style.width = `${Math.abs(b[0] - a[0])}px`;
    style.height = `${Math.abs(b[1] - a[1])}px`;
    this.overlay.hidden = false;
  }

  // Draw the chosen box (or nothing) over the preview as it is laid out now.
  draw() {
    const frame = this.frame();
    const size = this.photoSize();
    if (!this.box || !frame || !size) {
      this.overlay.hidden = true;
      return;
    }
    const sx = frame.width / size[0];
    const sy = frame.height / size[1];
    const [x0, y0, x1, y1] = this.box;
    this.place(frame, [x0 * sx, y0 * sy], [x1 * sx, y1 * sy]);
  }
}
