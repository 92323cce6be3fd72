/**
 * The gateway process: `tsx gateway/src/main.ts [--config FILE] [--print-config] [--help]`.
 * Loads and validates the configuration once (exit 2 on a bad value), starts
 * the gateway, and turns SIGTERM/SIGINT into a drain (exit 0 once drained; a
 * second signal exits at once).
 */
import { stringify } from 'yaml';
import { ENV } from './config/constants';
import { ConfigError, loadConfig } from './config/load';
import { describeSettings, maskSecrets } from './config/describe';
import { startGateway } from './gateway';
import { createLogger } from './ops/logger';

const EXIT_CONFIG = 2;

interface Args {
  readonly help: boolean;
  readonly printConfig: boolean;
  readonly configFile?: string;
}

function parseArgs(argv: readonly string[]): Args {
  let help = false;
  let printConfig = false;
  let configFile: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--help' || arg === '-h') help = true;
    else if (arg === '--print-config') printConfig = true;
    else if (arg === '--config' || arg === '-c') {
      configFile = argv[++i];
      if (!configFile) throw new ConfigError([`${arg}: expected a file name after it`]);
    } else if (arg.startsWith('--config=')) {
      configFile = arg.slice('--config='.length);
      // an empty value would otherwise mean "no file": the built-in defaults, silently
      if (!configFile) throw new ConfigError(['--config=: expected a file name after the "="']);
    }
    else throw new ConfigError([`unknown argument ${JSON.stringify(arg)}; see --help`]);
  }
  return { help, printConfig, configFile };
}

function usage(): string {
  return [
    'smtp-gateway: an SMTP relay that checks who may relay and passes mail to an upstream smarthost.',
    '',
    'Usage: smtp-gateway [--config FILE] [--print-config] [--help]',
    '',
    `  --config FILE    YAML configuration file (default: $${ENV.configFile})`,
    '  --print-config   print the effective configuration (secrets masked) and exit',
    '  --help           print this help and exit',
    '',
    `Every key can also be set from the environment: ${ENV.overridePrefix}<KEY>__<SUBKEY>, e.g.`,
    `${ENV.overridePrefix}UPSTREAM__HOST=email-smtp.us-east-1.amazonaws.com; lists are comma separated.`,
    `upstream.host is required; for local development ${ENV.overridePrefix}DEV_UPSTREAM__ENABLED=true (make run) relays to`,
    'a development upstream that writes .eml files under .dev-mail/ and delivers nothing.',
    '',
    'Settings (environment variable, default, description):',
    ...describeSettings().map((line) => `  ${line}`),
    '',
  ].join('\n');
}

async function main(): Promise<void> {
  let args: Args;
  let loaded: ReturnType<typeof loadConfig>;
  try {
    args = parseArgs(process.argv.slice(2));
    if (args.help) {
      process.stdout.write(usage());
      return;
    }
    loaded = loadConfig({ file: args.configFile });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`smtp-gateway: ${err.message}\n`);
      process.exit(EXIT_CONFIG);
    }
    throw err;
  }
  if (args.printConfig) {
    if (loaded.file) process.stdout.write(`# from ${loaded.file} and ${ENV.overridePrefix}* environment variables\n`);
    process.stdout.write(stringify(maskSecrets(loaded.config)));
    return;
  }

  const logger = createLogger({ level: loaded.config.log.level, base: { service: 'smtp-gateway' }, buffered: true });
  let gateway: Awaited<ReturnType<typeof startGateway>>;
  try {
    gateway = await startGateway(loaded.config, { logger });
  } catch (err) {
    const message = (err as Error).message;
    logger.error('start-up failed', { err: message });
    process.stderr.write(`smtp-gateway: start-up failed: ${message}\n`);
    process.exit(EXIT_CONFIG);
  }

  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    signals++;
    if (signals > 1) {
      logger.warn('second signal, exiting at once', { signal });
      process.exit(1);
    }
    logger.info('signal received, draining', { signal });
    gateway.drain().then(
      () => process.exit(0),
      (err: Error) => {
        logger.error('drain failed', { err: err.message });
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}

main().catch((err: Error) => {
  process.stderr.write(`smtp-gateway: ${err.stack ?? err.message}\n`);
  process.exit(1);
});
