/**
 * Receives a multipart upload (POST /v1/documents) straight to disk with busboy: each `file` part is
 * streamed into its own directory under the job's upload directory (never held whole in memory),
 * cut off at `maxFileBytes` while streaming (413, and everything this request wrote is removed), and
 * a client that goes away mid-upload leaves nothing behind.
 */
import fs from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import busboy from 'busboy';
import type { Request } from 'express';
import { MnemeError, PayloadTooLargeError, ValidationError } from '../../core/errors.ts';

/** Most files one request may carry. */
export const MAX_UPLOAD_FILES = 100;
/** Longest stored file name, in characters (the extension is kept). */
export const MAX_UPLOAD_NAME_CHARS = 200;
/** Largest non-file field (`collection`), in bytes. */
export const MAX_UPLOAD_FIELD_BYTES = 1024;

/**
 * The name an uploaded file is stored and cited under (pure): the last path segment only (`../x`
 * → `x`), NFC, control characters and U+FFFD (what invalid UTF-8 decodes to) replaced by `_`, no
 * leading dots or spaces, at most MAX_UPLOAD_NAME_CHARS characters (extension kept). null when
 * nothing usable is left.
 */
export function sanitizeUploadName(raw: string): string | null {
  // eslint-disable-next-line no-control-regex
  let name = (raw.split(/[\\/]/).pop() ?? '').normalize('NFC').replace(/[\u0000-\u001f\u007f\ufffd]/g, '_');
  name = name.replace(/^[.\s]+/, '').trim();
  if (name === '' || /^_+$/.test(name)) return null;
  if ([...name].length > MAX_UPLOAD_NAME_CHARS) {
    const ext = path.extname(name).slice(0, 16);
    name = [...name].slice(0, MAX_UPLOAD_NAME_CHARS - ext.length).join('') + ext;
  }
  return name;
}

export interface ReceivedUpload {
  files: Array<{ path: string; name: string }>;
  /** File parts whose name could not be used. */
  refused: Array<{ file: string; reason: string }>;
  fields: Record<string, string>;
}

/** The request ended before the whole body arrived (no response can be sent). */
export class UploadAbortedError extends MnemeError {
  constructor() {
    super('request_aborted', 400, 'the upload was not received completely');
  }
}

/**
 * Streams the request's `file` parts into `dir` (created, 0700) and collects its text fields.
 * On any failure the directory is removed before the promise rejects.
 * @throws ValidationError (not multipart, too many files or fields), PayloadTooLargeError (a file over
 * `maxFileBytes`: the connection is closed after the answer), UploadAbortedError (client went away)
 */
export async function receiveUpload(req: Request, dir: string, maxFileBytes: number): Promise<ReceivedUpload> {
  let bb: busboy.Busboy;
  try {
    bb = busboy({
      headers: req.headers,
      defParamCharset: 'utf8',
      limits: { fileSize: maxFileBytes, files: MAX_UPLOAD_FILES, fields: 10, fieldSize: MAX_UPLOAD_FIELD_BYTES },
    });
  } catch (err) {
    throw new ValidationError('expected a multipart/form-data body with one or more "file" parts', { cause: err });
  }
  await fs.promises.mkdir(dir, { recursive: true, mode: 0o700 });
  const result: ReceivedUpload = { files: [], refused: [], fields: {} };
  const writes: Array<Promise<void>> = [];
  const outputs: fs.WriteStream[] = [];
  try {
    await new Promise<void>((resolve, reject) => {
      let failed = false;
      const fail = (err: Error) => {
        if (failed) return;
        failed = true;
        req.unpipe(bb);
        for (const o of outputs) o.destroy();
        // Drain the rest so the client reads the answer (the connection closes after it).
        req.resume();
        reject(err);
      };
      req.once('close', () => {
        if (!req.complete) fail(new UploadAbortedError());
      });
      bb.on('field', (name, value) => {
        result.fields[name] = value;
      });
      bb.on('file', (field, stream, info) => {
        const name = field === 'file' && info.filename ? sanitizeUploadName(info.filename) : null;
        if (field !== 'file' || !info.filename) return void stream.resume();
        if (name === null) {
          result.refused.push({ file: info.filename.slice(0, MAX_UPLOAD_NAME_CHARS), reason: 'invalid_name' });
          return void stream.resume();
        }
        const sub = path.join(dir, String(result.files.length + result.refused.length));
        fs.mkdirSync(sub, { mode: 0o700 });
        const file = path.join(sub, name);
        const out = fs.createWriteStream(file, { mode: 0o600 });
        outputs.push(out);
        result.files.push({ path: file, name });
        stream.once('limit', () => fail(new PayloadTooLargeError(`"${name}" is over the ${maxFileBytes}-byte limit (MNEME_MAX_FILE_BYTES)`)));
        writes.push(pipeline(stream, out).catch((err: Error) => fail(failed ? err : new ValidationError(`could not store "${name}": ${err.message}`))));
      });
      bb.once('filesLimit', () => fail(new ValidationError(`at most ${MAX_UPLOAD_FILES} files per request`)));
      bb.once('fieldsLimit', () => fail(new ValidationError('too many form fields')));
      bb.once('error', (err: Error) => fail(req.complete ? new ValidationError(`malformed multipart body: ${err.message}`) : new UploadAbortedError()));
      bb.once('close', () => {
        void Promise.all(writes).then(() => (failed ? undefined : resolve()));
      });
      req.pipe(bb);
    });
  } catch (err) {
    await fs.promises.rm(dir, { recursive: true, force: true });
    throw err;
  }
  return result;
}
