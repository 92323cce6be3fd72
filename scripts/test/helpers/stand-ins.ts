/**
 * Runs the AWS scripts for real, in a throw-away git work tree, with stand-in aws, eksctl, kubectl, helm
 * and docker programs first on PATH (fixtures/stand-in.sh) that record every call and answer from rules.
 * Nothing else is faked: the scripts' own bash, git, sed and date run as they would for a user.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, cpSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT } from './repo';

export const STAND_IN_TOOLS = ['aws', 'eksctl', 'kubectl', 'helm', 'docker'] as const;
export type StandInTool = (typeof STAND_IN_TOOLS)[number];

/** An answer of the stand-ins: the first rule whose regex (bash ERE) matches "NAME ARG ARG..." wins. */
export interface Rule {
  match: string;
  exit?: number;
  stdout?: string;
  stderr?: string;
}

export interface RunOptions {
  rules?: Rule[];
  /** Text on the script's standard input (the confirmation answer); none by default. */
  input?: string;
  /** Stand-ins to leave off PATH, to see the script notice. */
  without?: StandInTool[];
  /**
   * Also put /usr/bin and /bin on PATH (after the stand-ins), for running make. Off by default: this
   * machine has a real kubectl in /usr/bin, and a missing stand-in must not fall through to it.
   */
  systemPath?: boolean;
  /** Extra environment variables for the script (its settings, e.g. CANARY_MIN_SOAK_PROMOTE). */
  env?: Record<string, string>;
}

/** The only system programs the scripts may use besides the stand-ins. */
const SYSTEM_TOOLS = ['bash', 'basename', 'dirname', 'git', 'sed', 'date', 'cat', 'awk'];
const systemTool = (name: string) => {
  const found = spawnSync('bash', ['-c', `command -v ${name}`], { encoding: 'utf8' }).stdout.trim();
  if (!found) throw new Error(`the script tests need '${name}' on PATH`);
  return found;
};

export interface RunResult {
  status: number | null;
  /** stdout and stderr interleaved as a terminal shows them. */
  output: string;
  /** Each stand-in call: the program name, then its arguments. */
  calls: string[][];
  /** The same calls, joined with spaces for readable assertions. */
  commands: string[];
  /** What docker login read on its standard input. */
  stdin: string;
}

const US = '\x1f';

/** Files the scripts read from a work tree. */
const COPIED = ['scripts/deploy.sh', 'scripts/cleanup.sh', 'scripts/lib', 'eksctl', 'deploy/cloudwatch-dashboard.json', 'gateway/Dockerfile', 'package.json'];
const WRAPPERS = ['deploy-aws-staging.sh', 'deploy-aws-production.sh', 'cleanup-aws-staging.sh', 'cleanup-aws-production.sh'];

export class ScriptSandbox {
  readonly dir = mkdtempSync(join(tmpdir(), 'smtpgw-deploy-'));
  readonly tree = join(this.dir, 'repo');
  private runs = 0;

  constructor() {
    for (const path of [...COPIED, ...WRAPPERS.map((w) => `scripts/${w}`)]) {
      cpSync(join(REPO_ROOT, path), join(this.tree, path), { recursive: true });
    }
    // The real chart and overlays, so the recorded helm commands can be replayed against them.
    for (const path of ['values/staging.yaml', 'values/prod.yaml', 'charts/smtp-gateway']) {
      if (existsSync(join(REPO_ROOT, path))) cpSync(join(REPO_ROOT, path), join(this.tree, path), { recursive: true });
    }
    this.git('init', '--quiet', '--initial-branch=main');
    this.git('remote', 'add', 'origin', 'https://git.example.test/smtp-gateway.git');
    this.git('add', '.');
    this.git('commit', '--quiet', '--message', 'snapshot for the deploy script tests');
  }

  git(...args: string[]): string {
    const result = spawnSync('git', ['-c', 'user.name=test', '-c', 'user.email=test@example.test', ...args], {
      cwd: this.tree,
      encoding: 'utf8',
    });
    if (result.status !== 0) throw new Error(`git ${args.join(' ')} failed: ${result.stderr}`);
    return result.stdout.trim();
  }

  /** The abbreviated revision the scripts tag images with. */
  get revision(): string {
    return this.git('rev-parse', '--short=12', 'HEAD');
  }

  /** Leave an uncommitted change to a tracked file. */
  makeDirty(): void {
    writeFileSync(join(this.tree, 'package.json'), `${readFileSync(join(this.tree, 'package.json'), 'utf8')}\n`);
  }

  /** Run one of the scripts of the sandbox work tree. */
  run(script: string, args: string[], options: RunOptions = {}): RunResult {
    return this.exec(join(this.tree, 'scripts', script), args, this.tree, options);
  }

  /** Run any program (make, say) with the stand-ins first on PATH. */
  exec(program: string, args: string[], cwd: string, options: RunOptions = {}): RunResult {
    const runDir = join(this.dir, `run-${++this.runs}`);
    const bin = join(runDir, 'bin');
    mkdirSync(bin, { recursive: true });
    for (const tool of STAND_IN_TOOLS) {
      if (!options.without?.includes(tool)) symlinkSync(join(REPO_ROOT, 'scripts/test/fixtures/stand-in.sh'), join(bin, tool));
    }
    for (const tool of SYSTEM_TOOLS) symlinkSync(systemTool(tool), join(bin, tool));
    const log = join(runDir, 'calls');
    const rules = join(runDir, 'rules');
    writeFileSync(log, '');
    writeFileSync(
      rules,
      (options.rules ?? []).map((r) => [r.match, r.exit ?? 0, r.stdout ?? '', r.stderr ?? ''].join(US)).join('\n') + '\n',
    );
    const outputFile = join(runDir, 'output');
    const fd = openSync(outputFile, 'w');
    const result = spawnSync(program, args, {
      cwd,
      input: options.input ?? '',
      stdio: ['pipe', fd, fd],
      env: { ...options.env, PATH: options.systemPath ? `${bin}:/usr/bin:/bin` : bin, HOME: this.dir, STANDIN_LOG: log, STANDIN_RULES: rules, LANG: 'C.UTF-8' },
      timeout: 20_000,
    });
    closeSync(fd);
    const calls = readFileSync(log, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((line) => line.split(US));
    return {
      status: result.status,
      output: readFileSync(outputFile, 'utf8'),
      calls,
      commands: calls.map((call) => call.join(' ')),
      stdin: existsSync(`${log}.stdin`) ? readFileSync(`${log}.stdin`, 'utf8') : '',
    };
  }

  dispose(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}
