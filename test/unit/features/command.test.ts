import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { featuresCommand } from '../../../src/commands/features.ts';
import type { CommandIo } from '../../../src/commands/types.ts';
import { NotFoundError, ValidationError } from '../../../src/core/errors.ts';
import { openSqliteStore } from '../../../src/core/store/sqlite/index.ts';
import { PRECOMPUTED_FEATURES } from '../../../src/features/definitions.ts';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

function io(): CommandIo & { out: () => string } {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let text = '';
  stdout.on('data', (c: Buffer) => (text += c.toString()));
  return { stdout, stderr, env: {}, isTty: false, out: () => text };
}

/** A data dir with one user who asked two questions and rated one answer. */
async function seeded(): Promise<string> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mneme-'));
  dirs.push(dir);
  const store = openSqliteStore(path.join(dir, 'mneme.sqlite'));
  const db = store.connection.db;
  const user = (await store.users.create({ name: 'quinn', apiKeyHash: '0'.repeat(64), keyPrefix: 'mn_test', isAdmin: false, createdAt: '2025-01-01T00:00:00.000Z' })).id;
  db.prepare("INSERT INTO conversations (id, user_id, created_at, updated_at) VALUES ('conv_1', ?, '2025-01-01T00:00:00.000Z', '2025-01-01T00:00:00.000Z')").run(user);
  const insert = db.prepare(
    `INSERT INTO responses (id, user_id, conversation_id, turn_index, created_at, endpoint, request_json, query, history_json, collection, top_k,
       retrieved_json, features_json, prompt_name, prompt_sha256, rendered_prompt_json, model_backend, model_id, sampling_json, answer,
       citations_json, timings_json, status)
     VALUES (?, ?, 'conv_1', ?, ?, 'chat', '{}', ?, '[]', 'faq', 5, '[]', '{}', 'answer', 'x', '[]', 'extractive', 'extractive', '{}', ?, '[]', '{}', 'ok')`,
  );
  insert.run('resp_1', user, 0, '2025-01-01T00:00:00.000Z', 'first question', 'one two three four');
  insert.run('resp_2', user, 1, '2025-01-01T00:01:00.000Z', 'second question here', 'a b');
  db.prepare("INSERT INTO feedback (response_id, user_id, rating, created_at) VALUES ('resp_1', ?, 1, '2025-01-01T00:02:00.000Z')").run(user);
  await store.close();
  return dir;
}

describe('mneme features', () => {
  it('materialize --json prints the run summary, then show prints the online values', async () => {
    const dir = await seeded();
    const m = io();
    expect(await featuresCommand.run(['materialize', '--data-dir', dir, '--json'], m)).toBe(0);
    const summary = JSON.parse(m.out().trim().split('\n').pop()!);
    expect(summary).toMatchObject({ responses: 2, feedback: 1, users: 1, rebuilt: true });
    expect(summary.historyRows).toBeGreaterThan(PRECOMPUTED_FEATURES.length);
    expect(typeof summary.seconds).toBe('number');

    const s = io();
    expect(await featuresCommand.run(['show', '--user', 'quinn', '--data-dir', dir], s)).toBe(0);
    const shown = JSON.parse(s.out());
    expect(shown.user).toBe('quinn');
    expect(shown.features).toMatchObject({
      messages_total: 2,
      top_collections: ['faq'],
      helpful_rate: 1,
      preferred_answer_length: 4,
      last_seen_at: '2025-01-01T00:01:00.000Z',
    });

    const again = io();
    expect(await featuresCommand.run(['materialize', '--data-dir', dir], again)).toBe(0);
    expect(again.out()).toMatch(/^0 responses and 0 feedback rows for 0 users/);
  });

  it('show fails with NotFoundError for an unknown user and ValidationError without --user', async () => {
    const dir = await seeded();
    await expect(featuresCommand.run(['show', '--user', 'nobody', '--data-dir', dir], io())).rejects.toBeInstanceOf(NotFoundError);
    await expect(featuresCommand.run(['show', '--data-dir', dir], io())).rejects.toBeInstanceOf(ValidationError);
    await expect(featuresCommand.run(['explode', '--data-dir', dir], io())).rejects.toBeInstanceOf(ValidationError);
    await expect(featuresCommand.run([], io())).rejects.toBeInstanceOf(ValidationError);
  });

  it('list --json describes every feature', async () => {
    const l = io();
    expect(await featuresCommand.run(['list', '--json'], l)).toBe(0);
    const rows = JSON.parse(l.out()) as Array<{ name: string; source: string }>;
    expect(rows.map((r) => r.name)).toContain('interest_vector');
    expect(rows.find((r) => r.name === 'turn_index')?.source).toBe('request');
  });
});
