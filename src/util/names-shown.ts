// A list of names for a person: the first few, then how many more ("a, b, c and 4 more").

export function namesShown(names: readonly string[], shown: number): string {
  const first = names.slice(0, shown).join(", ");
  const rest = names.length - shown;
  return rest > 0 ? `${first} and ${rest} more` : first;
}
