/** `1 epoch`, `3 epochs`: a count with its noun in the right number. */
export function plural(n: number, noun: string, nouns = `${noun}s`): string {
  return `${n} ${n === 1 ? noun : nouns}`;
}

/** `Conv x52, Relu x35, Gemm`: names with how often each occurs (counts of 1 left out), in the map's order. */
export function countList(counts: Iterable<[string, number]>): string {
  return [...counts].map(([name, n]) => (n > 1 ? `${name} x${n}` : name)).join(', ');
}
