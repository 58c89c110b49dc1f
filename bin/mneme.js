#!/usr/bin/env node
// The `mneme` command. mneme ships as TypeScript run through tsx (no build step to forget).
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/cli.ts');
process.exitCode = await main(process.argv.slice(2));
