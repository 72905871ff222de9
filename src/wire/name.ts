// Domain names as divert writes them: one canonical text for a name's wire bytes, which
// the query path looks names up by and the table stores them under, and the reading of
// presentation format (RFC 1035 5.1, with escapes) into that same text. One form, made
// in one place, so a table entry always equals the query for its name.

import { DivertError } from '../errors.js';

/** RFC 1035 2.3.4: the octets of one label, and of a whole name on the wire (length octets and the root's zero included). */
export const MAX_LABEL_OCTETS = 63;
export const MAX_NAME_OCTETS = 255;

/**
 * Writes one octet of a label as canonical text at out[at] and returns the offset after
 * it: ASCII letters in lower case (RFC 4343), digits, "-", "_" and "*" as themselves,
 * every other octet as \DDD. So "." only ever separates labels and "\" only ever starts
 * an escape, and two spellings of one name never make two texts.
 */
export function writeCanonicalOctet(out: Buffer, at: number, b: number): number {
  if ((b >= 0x61 && b <= 0x7a) || (b >= 0x30 && b <= 0x39) || b === 0x2d || b === 0x5f || b === 0x2a) {
    out[at] = b;
    return at + 1;
  }
  if (b >= 0x41 && b <= 0x5a) {
    out[at] = b | 0x20;
    return at + 1;
  }
  out[at] = 0x5c;
  out[at + 1] = 0x30 + Math.floor(b / 100);
  out[at + 2] = 0x30 + (Math.floor(b / 10) % 10);
  out[at + 3] = 0x30 + (b % 10);
  return at + 4;
}

// The longest canonical text: 250 octets (a 255-octet name of four labels) as \DDD, and three dots.
const textScratch = Buffer.allocUnsafe(1024);

/** Canonical text of a name given as its labels' raw octets ("" for the root). */
export function nameText(labels: readonly Uint8Array[]): string {
  const size = labels.reduce((n, label) => n + 1 + 4 * label.length, 0);
  const out = size <= textScratch.length ? textScratch : Buffer.allocUnsafe(size);
  let at = 0;
  labels.forEach((label, i) => {
    if (i > 0) out[at++] = 0x2e;
    for (const b of label) at = writeCanonicalOctet(out, at, b);
  });
  return out.toString('latin1', 0, at);
}

/** Whether a name in presentation format ends with a "." that is not escaped (an absolute name). */
export function isAbsoluteName(text: string): boolean {
  if (!text.endsWith('.')) return false;
  let backslashes = 0;
  for (let i = text.length - 2; i >= 0 && text.charCodeAt(i) === 0x5c; i--) backslashes++;
  return backslashes % 2 === 0;
}

/** The name as messages quote it: a runaway one (a whole zone file in one token) is cut. */
function quoted(input: string): string {
  return `"${input.length > 1100 ? `${input.slice(0, 1100)}…` : input}"`;
}

function badName(input: string, what: string): never {
  throw new DivertError('BAD_NAME', `name ${quoted(input)} ${what}`);
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

/**
 * Reads a name in presentation format into its canonical text ("" for the root): labels
 * separated by ".", one final "." allowed; printable ASCII stands for itself, and any
 * octet can be written \DDD (three decimal digits) or \X (the character X itself, as "\."
 * for a dot inside a label). A space, a control or a non-ASCII character must be escaped.
 * Throws BAD_NAME for a bad escape, an empty label, a label over 63 octets or a name over
 * 255 octets on the wire (253 characters written without escapes).
 */
export function canonicalName(input: string): string {
  const n = input.length;
  if (n === 1 && input.charCodeAt(0) === 0x2e) return '';
  const out = textScratch;
  let at = 0;
  let labelStart = 0;
  let label = 0; // octets of the current label
  let wire = 1; // octets of the labels before it, with their length octets, and the root's zero
  for (let i = 0; i < n;) {
    let c = input.charCodeAt(i);
    if (c === 0x2e) {
      if (label === 0) badName(input, i === 0 ? 'starts with "." (an empty label)' : 'has an empty label (two dots in a row)');
      if (label > MAX_LABEL_OCTETS) labelTooLong(input, labelStart, i, label);
      wire += 1 + label;
      label = 0;
      i++;
      if (i < n && wire <= MAX_NAME_OCTETS) out[at++] = 0x2e;
      labelStart = i;
      continue;
    }
    if (c === 0x5c) {
      const next = i + 1 < n ? input.charCodeAt(i + 1) : -1;
      if (isDigit(next)) {
        const digits = input.slice(i + 1, i + 4);
        if (!/^\d{3}$/.test(digits) || Number(digits) > 255) {
          badName(input, `has a bad escape "\\${digits}" (expected \\DDD, three digits from 000 to 255)`);
        }
        c = Number(digits);
        i += 4;
      } else if (next >= 0x20 && next <= 0x7e) {
        c = next;
        i += 2;
      } else {
        badName(
          input,
          next < 0
            ? 'ends in a lone "\\" (write \\\\ for a backslash)'
            : `has a bad escape: "\\" before ${JSON.stringify(input[i + 1])} (expected \\DDD, or "\\" and a printable ASCII character)`,
        );
      }
    } else if (c > 0x20 && c < 0x7f) {
      i++;
    } else {
      const what =
        c > 0x7f
          ? `the non-ASCII character ${JSON.stringify(String.fromCodePoint(input.codePointAt(i)!))} (write each octet as \\DDD, or an internationalised name in its xn-- form)`
          : `${c === 0x20 ? 'a space' : `the control character ${JSON.stringify(input[i])}`} (write it as \\${String(c).padStart(3, '0')})`;
      badName(input, `holds ${what}`);
    }
    label++;
    // counting goes on past a limit (to name the sizes); writing stops, so the scratch space suffices
    if (label <= MAX_LABEL_OCTETS && wire + 1 + label <= MAX_NAME_OCTETS) at = writeCanonicalOctet(out, at, c);
  }
  if (label > MAX_LABEL_OCTETS) labelTooLong(input, labelStart, n, label);
  const octets = wire + (label > 0 ? 1 + label : 0);
  if (octets > MAX_NAME_OCTETS) {
    badName(input, `is ${octets} octets long on the wire; the limit is ${MAX_NAME_OCTETS} (253 characters written without escapes)`);
  }
  return out.toString('latin1', 0, at);
}

function labelTooLong(input: string, from: number, to: number, octets: number): never {
  return badName(input, `has a label of ${octets} octets, ${quoted(input.slice(from, to))}; the limit is ${MAX_LABEL_OCTETS}`);
}
