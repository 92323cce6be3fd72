/**
 * The recording upstream as its own process, so a fault scenario can SIGKILL
 * it and start it again on the same port. Usage:
 *   tsx bench/upstream-process.ts '{"port":N,"recordFile":"/path"}'
 * Prints {"port":N} on stdout once listening; ids go to recordFile.
 */
import { startRecordingUpstream, type RecordingUpstreamOptions } from '../testkit/recording-upstream';

async function main(): Promise<void> {
  const options = JSON.parse(process.argv[2] ?? '{}') as RecordingUpstreamOptions;
  if (!options.recordFile) throw new Error(`upstream-process: "recordFile" is required, got ${process.argv[2]}`);
  const upstream = await startRecordingUpstream(options);
  process.stdout.write(`${JSON.stringify({ port: upstream.port })}\n`);
  process.on('SIGTERM', () => void upstream.close().then(() => process.exit(0)));
  // The parent holds our stdin open; when it goes away, so do we.
  process.stdin.resume();
  process.stdin.on('end', () => process.exit(0));
}

main().catch((error: Error) => {
  process.stderr.write(`${error.stack ?? error.message}\n`);
  process.exit(1);
});
