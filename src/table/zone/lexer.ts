// Zone files, first step: the text split into rows (a record or a directive each, lines
// in parentheses joined) of tokens that know their line, and the `;divert` comment lines.

export interface Token {
  text: string;
  line: number;
  quoted: boolean;
}

export interface Row {
  tokens: Token[];
  /** The row's first line started with whitespace: the owner is the previous record's. */
  blankOwner: boolean;
  /** A `;divert OWNER JSON` comment line: the entry's rules and load sharing (see DIVERT_COMMENT). */
  divert?: { text: string; line: number };
}

/**
 * Rules and load sharing have no record type, so they travel in a comment that other
 * tools skip: `;divert OWNER {"weights":…,"pick":…,"rules":[…]}` at the start of a line,
 * OWNER relative to $ORIGIN like a record's. It also carries `ttl` for a name with no
 * address records, which a master file could not hold otherwise.
 */
export const DIVERT_COMMENT = ';divert ';

export type Fail = (line: number, message: string, cause?: unknown) => never;

// Character codes the tokenizer stops at.
const NL = 0x0a;
const CR = 0x0d;
const SPACE = 0x20;
const TAB = 0x09;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const SEMICOLON = 0x3b;
const OPEN = 0x28;
const CLOSE = 0x29;

/** Whether code `c` ends a word: blank, line end, comment, parenthesis or quote. */
function endsWord(c: number): boolean {
  return c === SPACE || c === TAB || c === CR || c === NL || c === SEMICOLON || c === OPEN || c === CLOSE || c === QUOTE;
}

/**
 * Splits the text into rows (records or directives), joining lines inside parentheses,
 * and hands each to `row` as it is complete: nothing of the file is kept but the text.
 */
export function tokenize(text: string, fail: Fail, row: (row: Row) => void): void {
  let tokens: Token[] = [];
  let blankOwner = false;
  let line = 1;
  let openParenLine = 0;
  let lineStart = true;
  const end = text.length;
  for (let i = text.charCodeAt(0) === 0xfeff ? 1 : 0; i < end;) {
    const c = text.charCodeAt(i);
    if (c === NL) {
      if (openParenLine === 0 && tokens.length > 0) {
        row({ tokens, blankOwner });
        tokens = [];
      }
      line++;
      i++;
      lineStart = true;
      continue;
    }
    if (lineStart && openParenLine === 0) blankOwner = c === SPACE || c === TAB;
    lineStart = false;
    if (c === SPACE || c === TAB || c === CR) {
      i++;
    } else if (c === SEMICOLON) {
      const from = i;
      i = text.indexOf('\n', i);
      if (i < 0) i = end;
      if (tokens.length === 0 && openParenLine === 0 && !blankOwner && text.startsWith(DIVERT_COMMENT, from)) {
        row({ tokens: [], blankOwner: false, divert: { text: text.slice(from + DIVERT_COMMENT.length, i).trim(), line } });
      }
    } else if (c === OPEN) {
      if (openParenLine !== 0) fail(line, `"(" inside parentheses opened on line ${openParenLine} (expected ")" first)`);
      openParenLine = line;
      i++;
    } else if (c === CLOSE) {
      if (openParenLine === 0) fail(line, '")" without an opening "("');
      openParenLine = 0;
      i++;
    } else if (c === QUOTE) {
      let j = i + 1;
      for (let d = text.charCodeAt(j); j < end && d !== QUOTE && d !== NL; d = text.charCodeAt(j)) {
        j += d === BACKSLASH && text.charCodeAt(j + 1) !== NL ? 2 : 1;
      }
      if (j >= end || text.charCodeAt(j) !== QUOTE)
        fail(line, `string ${text.slice(i, Math.min(j, i + 20))}… is not closed (expected '"' before the end of the line)`);
      tokens.push({ text: text.slice(i + 1, j), line, quoted: true });
      i = j + 1;
    } else {
      let j = i;
      for (let d = c; j < end && !endsWord(d); d = text.charCodeAt(j)) {
        j += d === BACKSLASH && j + 1 < end && text.charCodeAt(j + 1) !== NL ? 2 : 1;
      }
      tokens.push({ text: text.slice(i, j), line, quoted: false });
      i = j;
    }
  }
  if (openParenLine !== 0) fail(openParenLine, '"(" is never closed (expected ")" before the end of the file)');
  if (tokens.length > 0) row({ tokens, blankOwner });
}
