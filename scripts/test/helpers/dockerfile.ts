/**
 * gateway/Dockerfile parsed once (dockerfile-ast) into what the image tests compare with the rest of the
 * repository: the stages, and the runtime stage's entrypoint, environment, user and ports.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DockerfileParser, type Env, type Instruction } from 'dockerfile-ast';
import { REPO_ROOT } from './repo';

export const DOCKERFILE_TEXT = readFileSync(join(REPO_ROOT, 'gateway/Dockerfile'), 'utf8');
export const dockerfile = DockerfileParser.parse(DOCKERFILE_TEXT);

/** An instruction's arguments, as words. */
export const words = (instruction: Instruction) => instruction.getArguments().map((a) => a.getValue());
/** The instructions of one keyword. */
export const ofKind = (instructions: Instruction[], keyword: string) => instructions.filter((i) => i.getKeyword() === keyword);

/** The instructions of each stage (from its FROM on), by stage name. */
export function stages(): Map<string, Instruction[]> {
  const byStage = new Map<string, Instruction[]>();
  let current: Instruction[] | undefined;
  for (const instruction of dockerfile.getInstructions()) {
    if (instruction.getKeyword() === 'FROM') {
      current = [];
      const from = dockerfile.getFROMs().find((f) => f.getRange().start.line === instruction.getRange().start.line);
      byStage.set(from?.getBuildStage() ?? '', current);
    }
    current?.push(instruction);
  }
  return byStage;
}

/** The stage the image is: the runtime stage. */
export const runtimeStage = stages().get('runtime') ?? [];

/** ENTRYPOINT ["node", "dist/..."]: the command the container runs. */
export const entrypoint: string[] = JSON.parse(ofKind(runtimeStage, 'ENTRYPOINT')[0]?.getRawArgumentsContent() ?? '[]');

/** The runtime stage's ENV, which the container starts with. */
export const imageEnv: Record<string, string> = Object.fromEntries(
  ofKind(runtimeStage, 'ENV')
    .flatMap((i) => (i as Env).getProperties())
    .map((p) => [p.getName(), p.getValue() ?? '']),
);

/** USER uid:gid of the runtime stage, as numbers. */
export const imageUser = (() => {
  const [user = '', group = ''] = (ofKind(runtimeStage, 'USER').flatMap(words)[0] ?? '').split(':');
  return { uid: Number(user), gid: Number(group) };
})();

/** EXPOSEd ports of the runtime stage. */
export const exposedPorts = ofKind(runtimeStage, 'EXPOSE').flatMap(words).map(Number);
