/** The value of the sample `name{labels...}` in Prometheus text `text` (0 when absent). */
export function metricValue(text: string, name: string, labels: string): number {
  for (const line of text.split("\n")) {
    if (line.startsWith(`${name}{`) && labels.split(",").every((label) => line.includes(label))) {
      return Number(line.slice(line.lastIndexOf(" ") + 1));
    }
  }
  return 0;
}
