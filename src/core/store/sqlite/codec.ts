/** How the SQLite engine stores values that have no native column type. */

/** Float32Array → BLOB (copy-free view of the same bytes, float32 little-endian). */
export function vectorToBlob(v: Float32Array): Buffer {
  return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

/** BLOB → Float32Array (copies, so the result is aligned and owned). */
export function blobToVector(b: Uint8Array): Float32Array {
  const out = new Float32Array(b.byteLength / 4);
  new Uint8Array(out.buffer).set(b);
  return out;
}

/** A list of integer ids as the JSON text `json_each(?)` expands (one bound parameter for any count). */
export function idList(ids: readonly number[]): string {
  return JSON.stringify(ids);
}
