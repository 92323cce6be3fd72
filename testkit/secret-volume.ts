/**
 * A folder laid out the way the kubelet mounts a Secret or ConfigMap volume:
 * `<dir>/<key>` → `..data/<key>`, `..data` → `..<timestamp>/`. An update writes
 * a new timestamped folder and renames a fresh `..data_tmp` symlink over
 * `..data`, so every key changes at once and the key files' own inodes never
 * do. Tests of file reloading use it to meet the same swap as in a pod.
 */
import { mkdir, mkdtemp, readlink, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface SecretVolume {
  readonly dir: string;
  /** Path of a key as the pod sees it. */
  path(key: string): string;
  /** Replaces all keys at once, as a Secret update does. */
  update(files: Record<string, string | Buffer>): Promise<void>;
}

let generation = 0;

export async function makeSecretVolume(files: Record<string, string | Buffer>): Promise<SecretVolume> {
  const dir = await mkdtemp(join(tmpdir(), 'smtp-gateway-secret-'));
  const writeGeneration = async (content: Record<string, string | Buffer>): Promise<string> => {
    const name = `..${new Date().toISOString().replace(/[:.]/g, '_')}.${process.pid}.${++generation}`;
    await mkdir(join(dir, name));
    for (const [key, value] of Object.entries(content)) await writeFile(join(dir, name, key), value);
    return name;
  };
  const first = await writeGeneration(files);
  await symlink(first, join(dir, '..data'));
  for (const key of Object.keys(files)) await symlink(join('..data', key), join(dir, key));
  return {
    dir,
    path: (key) => join(dir, key),
    async update(content) {
      const previous = await readlink(join(dir, '..data'));
      const next = await writeGeneration(content);
      await symlink(next, join(dir, '..data_tmp'));
      await rename(join(dir, '..data_tmp'), join(dir, '..data'));
      for (const key of Object.keys(content)) {
        await symlink(join('..data', key), join(dir, key)).catch((error: NodeJS.ErrnoException) => {
          if (error.code !== 'EEXIST') throw error;
        });
      }
      await rm(join(dir, previous), { recursive: true, force: true });
    },
  };
}
