/** Initials on a colour picked from the name, so people tell rooms apart at a glance. */
export function Avatar({ name, group = false }: { name: string; group?: boolean }) {
  const letters = name.replace(/^[@#!]/, '').slice(0, group ? 2 : 1).toUpperCase();
  let hash = 0;
  for (const char of name) hash = (hash * 31 + char.charCodeAt(0)) % 360;
  return (
    <span className={`avatar ${group ? 'group' : ''}`} style={{ backgroundColor: `hsl(${hash} 45% 42%)` }} aria-hidden="true">
      {letters}
    </span>
  );
}
