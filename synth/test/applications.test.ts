/**
 * The chart's applications (values → rendered ConfigMap and pod) read by the
 * gateway's own code: the file the chart writes from applications.inline parses
 * to the same applications, and config.applications.file names the path where
 * the pod's projected volume puts it. helm renders; nothing is re-implemented.
 */
import { posix } from 'node:path';
import YAML from 'yaml';
import { describe, expect, it } from 'vitest';
import { APPLICATIONS_FILE_NAME, CONFIG_FILE_NAME, MOUNT_PATHS } from '../../gateway/src/config/constants';
import { configSchema } from '../../gateway/src/config/schema';
import { parseApplicationFile } from '../../gateway/src/smtp/application-file';
import { kubeconform, helmTemplate, render, valuesFile } from './support';

const INLINE = [
  {
    name: 'billing',
    match: { users: ['billing-app'], networks: ['10.0.12.0/24'] },
    senders: ['Bücher.example', 'NoReply@Example.com'],
    messagesPerMinute: 600,
    maxRecipients: 10,
    ses: { configurationSet: 'billing', tags: { app: 'billing', team: 'payments' } },
  },
  { name: 'cron', match: { networks: ['10.0.0.0/16'] } },
];

describe('applications in the chart', () => {
  it('the gateway reads the rendered file and config at the path the pod mounts it', () => {
    const values = valuesFile({ config: { upstream: { host: 'email-smtp.us-east-1.amazonaws.com' }, applications: { unmatched: 'refuse' } }, applications: { inline: INLINE } });
    const docs = render({ values: [values], release: 'mail' });
    const configMap = docs.find((d) => d.kind === 'ConfigMap' && d.metadata.name === 'mail-smtp-gateway-applications');
    const file = parseApplicationFile(configMap?.data[APPLICATIONS_FILE_NAME], 'rendered');
    expect(file.applications.map((app) => app.name)).toEqual(['billing', 'cron']);
    // the gateway's canonical forms: an A-label domain, a lower-case address
    expect(file.applications[0].senders).toEqual(['xn--bcher-kva.example', 'noreply@example.com']);
    expect(file.applications[0].ses).toEqual({ configurationSet: 'billing', tags: { app: 'billing', team: 'payments' } });

    const gatewayConfig = docs.find((d) => d.kind === 'ConfigMap' && d.metadata.name === 'mail-smtp-gateway');
    const config = configSchema.parse(YAML.parse(gatewayConfig?.data[CONFIG_FILE_NAME]));
    expect(config.applications).toEqual({ file: posix.join(MOUNT_PATHS.applicationsDir, APPLICATIONS_FILE_NAME), unmatched: 'refuse' });
    const deployment = docs.find((d) => d.kind === 'Deployment');
    const container = deployment?.spec.template.spec.containers[0];
    const volume = deployment?.spec.template.spec.volumes.find((v: { name: string }) => v.name === 'config');
    const mount = container.volumeMounts.find((m: { name: string }) => m.name === 'config');
    const source = volume.projected.sources.find((s: { configMap?: { name: string } }) => s.configMap?.name === configMap?.metadata.name);
    expect(posix.join(mount.mountPath, source.configMap.items[0].path)).toBe(config.applications.file);
    expect(kubeconform(helmTemplate({ values: [values], release: 'mail' }).stdout).status).toBe(0);
  });
});
