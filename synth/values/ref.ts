/**
 * `.Values.<path>` for a key of the model; a path the model does not have is a
 * synth-time error, so a construct cannot reference a value that does not exist.
 */
import { defaultValues } from './json-schema';

const defaults = defaultValues() as unknown as Record<string, unknown>;

export function valueRef(path: string): string {
  let node: unknown = defaults;
  for (const part of path.split('.')) {
    if (node === null || typeof node !== 'object' || !(part in node)) {
      throw new Error(`Value "${path}" is not in the values model (synth/values/schema.ts); "${part}" is unknown`);
    }
    node = (node as Record<string, unknown>)[part];
  }
  return `.Values.${path}`;
}
