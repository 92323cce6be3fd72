/**
 * One message through a real SMTP client (nodemailer) to the gateway; resolves
 * with the final reply whether the message was accepted or refused, and how
 * long the client waited for it.
 */
import nodemailer from 'nodemailer';

export interface SendResult {
  readonly code: number;
  readonly response: string;
  readonly ms: number;
}

export interface SendOptions {
  readonly from?: string;
  readonly to?: readonly string[];
  /** @default a small message from app@example.com to user@example.org */
  readonly raw?: string | Buffer;
  /** Client socket timeout. @default 20000 */
  readonly timeoutMs?: number;
}

export const TEST_MESSAGE = 'From: app@example.com\r\nTo: user@example.org\r\nSubject: hello\r\n\r\nBody line\r\n';

export async function sendMail(port: number, options: SendOptions = {}): Promise<SendResult> {
  const timeout = options.timeoutMs ?? 20_000;
  const client = nodemailer.createTransport({ host: '127.0.0.1', port, secure: false, ignoreTLS: true, socketTimeout: timeout, greetingTimeout: timeout });
  const started = performance.now();
  try {
    const info = await client.sendMail({
      envelope: { from: options.from ?? 'app@example.com', to: [...(options.to ?? ['user@example.org'])] },
      raw: options.raw ?? TEST_MESSAGE,
    });
    return { code: 250, response: info.response, ms: performance.now() - started };
  } catch (err) {
    const e = err as { responseCode?: number; response?: string; message: string };
    return { code: e.responseCode ?? 0, response: e.response ?? e.message, ms: performance.now() - started };
  } finally {
    client.close();
  }
}
