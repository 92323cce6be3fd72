/**
 * One message sent with nodemailer (a real client), resolving with the final
 * reply whether the gateway accepted or refused it.
 */
import nodemailer from 'nodemailer';

export interface SendResult {
  readonly code: number;
  /** The reply line, e.g. "250 2.0.0 Ok: queued as …". */
  readonly response: string;
}

export async function sendRaw(port: number, raw: string | Buffer, envelope: { from: string; to: string[] }): Promise<SendResult> {
  const client = nodemailer.createTransport({ host: '127.0.0.1', port, secure: false, ignoreTLS: true, socketTimeout: 20_000 });
  try {
    const info = await client.sendMail({ envelope, raw });
    return { code: 250, response: info.response };
  } catch (err) {
    const e = err as { responseCode?: number; response?: string; message: string };
    return { code: e.responseCode ?? 0, response: e.response ?? e.message };
  } finally {
    client.close();
  }
}
