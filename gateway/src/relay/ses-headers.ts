/**
 * How SES over SMTP takes a configuration set and message tags: the headers
 * X-SES-CONFIGURATION-SET and X-SES-MESSAGE-TAGS ("name=value, name=value"),
 * which SES reads and removes. The gateway adds them from the application
 * policy; a client's own are refused (smtp/application-policy.ts).
 */
import type { ApplicationContext } from './upstream';

/** Header lines ("Name: value", no CRLF) for the application, none when it sets neither. */
export function sesHeaders(application: ApplicationContext | undefined): string[] {
  if (!application) return [];
  const lines: string[] = [];
  if (application.configurationSet) lines.push(`X-SES-CONFIGURATION-SET: ${application.configurationSet}`);
  const tags = Object.entries(application.tags ?? {});
  // names and values are letters, digits, "_" and "-" (application-file.ts), so nothing needs quoting
  if (tags.length) lines.push(`X-SES-MESSAGE-TAGS: ${tags.map(([name, value]) => `${name}=${value}`).join(', ')}`);
  return lines;
}
