/** Subject matching with NATS wildcards: `*` is one token, `>` the rest (one token or more). */

/** True when `subject` (no wildcards) matches `pattern`. */
export function subjectMatches(pattern: string, subject: string): boolean {
  return tokensMatch(pattern.split("."), subject.split("."));
}

/** {@link subjectMatches} on subjects already split into their tokens (a bus splits each subject once). */
export function tokensMatch(p: readonly string[], s: readonly string[]): boolean {
  for (let i = 0; i < p.length; i++) {
    const token = p[i];
    if (token === ">") return s.length > i;
    if (i >= s.length) return false;
    if (token !== "*" && token !== s[i]) return false;
  }
  return p.length === s.length;
}

/** True for a well-formed subject: non-empty tokens, no whitespace; wildcards only when `wildcards`. */
export function validSubject(subject: string, wildcards: boolean): boolean {
  if (subject.length === 0 || /\s/.test(subject)) return false;
  // One pass over the characters (checked on every publish): no array of tokens, no closure.
  let start = 0;
  for (let end = 0; end <= subject.length; end++) {
    if (end < subject.length && subject.charCodeAt(end) !== DOT) continue;
    if (end === start) return false;
    const first = subject.charCodeAt(start);
    if (end - start === 1 && (first === STAR || first === GT)) {
      if (!wildcards || (first === GT && end !== subject.length)) return false;
    } else {
      for (let i = start; i < end; i++) {
        const c = subject.charCodeAt(i);
        if (c === STAR || c === GT) return false;
      }
    }
    start = end + 1;
  }
  return true;
}

const DOT = 46;
const STAR = 42;
const GT = 62;
