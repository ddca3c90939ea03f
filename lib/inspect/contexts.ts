/**
 * The text around an activating token: the tokens of the same context window (rows whose
 * positions continue the row's position, as written by `extract`) from up to `before`
 * tokens earlier to `after` tokens later, with the active token flagged.
 */
import type { InspectRows } from "./data_source.ts";
import type { TokenLabeler } from "./token_text.ts";

/** Tokens shown before the active one. */
export const CONTEXT_BEFORE = 10;
/** Tokens shown after the active one. */
export const CONTEXT_AFTER = 3;

/** One token of a context. */
export interface ContextToken {
  text: string;
  /** True for the token the feature fired on. */
  active: boolean;
}

/** The context of `row`, or null when the dataset has no token files. */
export function contextOf(
  data: Pick<InspectRows, "tokens" | "rows">,
  row: number,
  labeler: TokenLabeler,
  before = CONTEXT_BEFORE,
  after = CONTEXT_AFTER,
): ContextToken[] | null {
  const t = data.tokens;
  if (!t) return null;
  const pos = t.positions[row];
  const first = row - Math.min(before, pos, row);
  let last = row;
  while (
    last + 1 < data.rows && last - row < after && t.positions[last + 1] === t.positions[last] + 1
  ) {
    last++;
  }
  const out: ContextToken[] = [];
  for (let r = first; r <= last; r++) {
    out.push({ text: labeler.label(t.ids[r]), active: r === row });
  }
  return out;
}

/** A context as one line, the active token in ⟦ ⟧, newlines shown as ⏎. */
export function contextLine(tokens: ContextToken[]): string {
  return tokens.map((t) => {
    const s = t.text.replace(/\n/g, "⏎");
    return t.active ? `⟦${s}⟧` : s;
  }).join("");
}
