import { resolve } from 'node:path';

/** The repository root, whatever folder the test runner was started from. */
export const REPO_ROOT = resolve(__dirname, '../../..');
