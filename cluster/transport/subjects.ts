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
  const tokens = subject.split(".");
  return tokens.every((token, i) => {
    if (token.length === 0) return false;
    if (token === "*" || token === ">") return wildcards && (token === "*" || i === tokens.length - 1);
    return !token.includes("*") && !token.includes(">");
  });
}
