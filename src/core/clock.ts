/** Current time as the ISO-8601 UTC string (milliseconds) stored everywhere; such strings sort as text. */
export function nowIso(): string {
  return new Date().toISOString();
}
