/** The initials of a name: the first letter, or for groups of the first two words. */
export function initials(name: string, group: boolean): string {
  const letters = name
    .replace(/^[@#!]/, '')
    .split(/[\s:]+/)
    .map((word) => /^[\p{L}\p{N}]/u.exec(word)?.[0])
    .filter((letter) => letter !== undefined);
  if (letters.length === 0) return '?';
  return (group ? letters.slice(0, 2) : letters.slice(0, 1)).join('').toUpperCase();
}

/** Initials on a colour picked from the name, so people tell rooms apart at a glance. */
export function Avatar({ name, group = false }: { name: string; group?: boolean }) {
  let hash = 0;
  for (const char of name) hash = (hash * 31 + (char.codePointAt(0) ?? 0)) % 360;
  return (
    <span className={`avatar ${group ? 'group' : ''}`} style={{ backgroundColor: `hsl(${hash} 45% 42%)` }} aria-hidden="true">
      {initials(name, group)}
    </span>
  );
}
