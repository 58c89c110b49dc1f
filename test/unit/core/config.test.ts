import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEFAULT_EMBED_MODEL, loadConfig } from '../../../src/core/config.ts';
import { ConfigError } from '../../../src/core/errors.ts';

describe('loadConfig', () => {
  it('has working defaults with an empty environment', () => {
    const c = loadConfig({});
    expect(c.dataDir).toBe(path.resolve('./data'));
    expect(c.modelsDir).toBe(path.join(c.dataDir, 'models'));
    expect(c.embed.model).toBe(DEFAULT_EMBED_MODEL);
    expect(c.llm.spec).toBe('extractive');
    expect(c.offline).toBe(false);
    expect(c.threads).toBeGreaterThan(0);
  });

  it('resolves local model paths, keeps hub ids, and "none" disables embeddings', () => {
    expect(loadConfig({ MNEME_EMBED_MODEL: './models/x' }).embed.model).toBe(path.resolve('./models/x'));
    expect(loadConfig({ MNEME_EMBED_MODEL: 'org/model' }).embed.model).toBe('org/model');
    expect(loadConfig({ MNEME_EMBED_MODEL: 'none' }).embed.model).toBeNull();
  });

  it('flags override the environment', () => {
    const c = loadConfig({ MNEME_DATA_DIR: '/tmp/a', MNEME_PORT: '1234' }, { dataDir: '/tmp/b', port: 99 });
    expect(c.dataDir).toBe('/tmp/b');
    expect(c.server.port).toBe(99);
  });

  it.each([
    ['MNEME_PORT', 'eighty'],
    ['MNEME_PORT', '70000'],
    ['MNEME_OFFLINE', 'maybe'],
    ['MNEME_LLM', 'gpt4'],
    ['MNEME_LLM', 'openai:not-a-url'],
    ['MNEME_PERSONALIZATION_WEIGHT', '-1'],
  ])('rejects %s=%s naming the variable', (name, value) => {
    expect(() => loadConfig({ [name]: value })).toThrow(ConfigError);
    expect(() => loadConfig({ [name]: value })).toThrow(new RegExp(`^${name}:`));
  });

  it('parses booleans and numbers', () => {
    const c = loadConfig({ MNEME_OFFLINE: '1', MNEME_LLM_TEMPERATURE: '0.7', MNEME_LLM: 'openai:http://127.0.0.1:8000/v1' });
    expect(c.offline).toBe(true);
    expect(c.llm.temperature).toBe(0.7);
    expect(c.llm.spec).toBe('openai:http://127.0.0.1:8000/v1');
  });
});
