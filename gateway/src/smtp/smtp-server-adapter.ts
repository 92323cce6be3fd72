/**
 * The one place the gateway reaches into smtp-server's internals (checked
 * against the installed release by test/smtp-server-adapter.test.ts). Its
 * public hooks run only for AUTH, MAIL, RCPT and DATA; the deadlines need every
 * command line and the moment the server is ready to read the next one, which
 * only the connection's private command dispatcher (`_onCommand`) sees.
 */
import type { SMTPServer } from 'smtp-server';

export interface CommandObserver {
  /** A complete command line arrived (`name` upper case, e.g. "EHLO"; AUTH continuation lines too). */
  command(name: string): void;
  /** The server answered it and is ready to read the next command. */
  ready(): void;
}

/** The parts of smtp-server's SMTPConnection used here. */
interface Connection {
  readonly id: string;
  _onCommand(command: Buffer, callback?: () => void): unknown;
  send(code: number, text: string, context?: string | false): void;
}

export interface ConnectionHandle {
  /** Sends a 421 reply (the text carries its own enhanced status code) and closes the connection. */
  close421(text: string): void;
}

/**
 * Observes every command of the connection smtp-server made for session `id`
 * (call right after `smtp.connect()`), also after STARTTLS, which replaces the
 * parser but keeps the connection.
 * @throws Error when smtp-server no longer has the internals this relies on
 */
export function observeConnection(smtp: SMTPServer, id: string, observer: CommandObserver): ConnectionHandle {
  const connection = [...(smtp.connections as Set<unknown>)].find((candidate) => (candidate as Connection).id === id) as Connection | undefined;
  if (!connection || typeof connection._onCommand !== 'function' || typeof connection.send !== 'function') {
    throw new Error(`smtp-server ${id ? 'has no connection with _onCommand() for this session' : 'was given no session id'}: the installed release is not the one smtp-server-adapter.ts was written for`);
  }
  const dispatch = connection._onCommand;
  connection._onCommand = function (this: Connection, command, callback) {
    observer.command(commandName(command));
    return dispatch.call(this, command, () => {
      observer.ready();
      callback?.();
    });
  };
  return {
    close421(text) {
      // context false: the text already starts with its enhanced status code
      connection.send(421, text, false);
    },
  };
}

function commandName(command: Buffer | string | undefined): string {
  const line = (command ?? '').toString();
  const space = line.indexOf(' ');
  return (space === -1 ? line : line.slice(0, space)).trim().toUpperCase().slice(0, 16);
}
