// The device login's QR code of its URL, drawn with half blocks (two rows of modules a line).
// Loaded only by `codex-auth login --device` on a terminal: built as dist/qr.cjs beside the bin
// (scripts/build.mjs), so no other command reads or compiles it.
import { renderUnicodeCompact } from 'uqr'

/**
 * The QR code's lines: light modules as blocks, dark ones as spaces, with a light quiet zone, so it
 * reads on the usual light-on-dark terminal. Error correction L: the smallest code for a URL.
 */
export function qrLines(text: string): string[] {
  return renderUnicodeCompact(text, { ecc: 'L', border: 2 }).split('\n').filter((l) => l !== '')
}
