/**
 * Summarises a V8 .cpuprofile (from `tsx bench/run.ts --cpu-prof`): self time
 * by function and by file or package, so BENCHMARKS.md can say what bounds a figure.
 *
 *   tsx bench/profile-summary.ts bench/results/profiles/2k-c50-0.cpuprofile [--top=25] [--callers=writeUtf8String]
 *
 * --callers attributes the self time of the named functions (say the native
 * socket write) to the nearest caller in a package or in the repository, to
 * tell whose writes they are.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** node_modules/<package> (or <@scope/package>), node:internal, or the repository path. */
function owner(url: string): string {
  if (!url) return '(native/v8)';
  const modules = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (modules) return modules[1];
  if (url.startsWith('node:')) return url.split('/').slice(0, 2).join('/');
  const repo = /\/(gateway|bench)\/.*$/.exec(url);
  return repo ? repo[0].slice(1) : url;
}

/** The first frame up the stack that is in a package or the repository (not Node's internals), as "function owner:line". */
function nearestCaller(id: number, byId: Map<number, ProfileNode>, parentOf: Map<number, number>): string {
  for (let at = parentOf.get(id); at !== undefined; at = parentOf.get(at)) {
    const frame = byId.get(at)!.callFrame;
    if (frame.url && !frame.url.startsWith('node:')) return `${frame.functionName || '(anonymous)'} ${owner(frame.url)}:${frame.lineNumber + 1}`;
  }
  return '(no JavaScript caller)';
}

function main(): void {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { top: { type: 'string', default: '25' }, callers: { type: 'string', default: '' } },
  });
  const top = Number(values.top);
  const traced = new Set(values.callers!.split(',').filter(Boolean));
  for (const file of positionals) {
    const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
    const byId = new Map(profile.nodes.map((node) => [node.id, node]));
    const selfUs = new Map<number, number>();
    profile.samples.forEach((id, i) => selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
    const total = [...selfUs.values()].reduce((a, b) => a + b, 0);
    const parentOf = new Map<number, number>();
    for (const node of profile.nodes) for (const child of node.children ?? []) parentOf.set(child, node.id);
    const byFunction = new Map<string, number>();
    const byOwner = new Map<string, number>();
    const byCaller = new Map<string, number>();
    for (const [id, us] of selfUs) {
      const frame = byId.get(id)!.callFrame;
      const fn = `${frame.functionName || '(anonymous)'} ${owner(frame.url)}:${frame.lineNumber + 1}`;
      byFunction.set(fn, (byFunction.get(fn) ?? 0) + us);
      byOwner.set(owner(frame.url), (byOwner.get(owner(frame.url)) ?? 0) + us);
      if (traced.has(frame.functionName)) {
        const caller = nearestCaller(id, byId, parentOf);
        byCaller.set(`${frame.functionName} <- ${caller}`, (byCaller.get(`${frame.functionName} <- ${caller}`) ?? 0) + us);
      }
    }
    const show = (title: string, map: Map<string, number>) => {
      console.log(`\n${title}`);
      for (const [name, us] of [...map].sort((a, b) => b[1] - a[1]).slice(0, top)) {
        console.log(`  ${((100 * us) / total).toFixed(1).padStart(5)}%  ${(us / 1000).toFixed(0).padStart(6)} ms  ${name}`);
      }
    };
    console.log(`# ${file}: ${(total / 1000).toFixed(0)} ms sampled`);
    show('self time by file / package', byOwner);
    show('self time by function', byFunction);
    if (traced.size) show('traced functions by nearest caller outside node:', byCaller);
  }
}

main();
