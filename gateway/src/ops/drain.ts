/**
 * Graceful-shutdown state: whether the gateway is draining, and how many mail
 * transactions are still in flight. gateway.ts owns the sequence (readyz false
 * → delay → close listeners and send 421 to idle sessions → wait for in-flight
 * within the grace period → close) and main.ts turns SIGTERM into it and exits
 * 0; this only holds the state the steps read, so each step can be tested
 * without signals.
 *
 * Event: 'idle' whenever the in-flight count drops to 0.
 */
import { EventEmitter } from 'node:events';

interface DrainEvents {
  idle: [];
}

export class DrainController extends EventEmitter<DrainEvents> {
  private _draining = false;
  private _inFlight = 0;

  get draining(): boolean {
    return this._draining;
  }

  /** Transactions entered and not yet left. */
  get inFlight(): number {
    return this._inFlight;
  }

  /** Enters draining, for good. */
  start(): void {
    this._draining = true;
  }

  /**
   * Counts one transaction as in flight until the returned function is called
   * (for callback-style code such as smtp-server's onData). Calling it more
   * than once is harmless.
   */
  enter(): () => void {
    this._inFlight += 1;
    let left = false;
    return () => {
      if (left) return;
      left = true;
      this._inFlight -= 1;
      if (this._inFlight === 0) this.emit('idle');
    };
  }

  /**
   * Resolves true as soon as nothing is in flight (at once if nothing is),
   * false if `timeoutMs` passes first.
   */
  idle(timeoutMs: number): Promise<boolean> {
    if (this._inFlight === 0) return Promise.resolve(true);
    if (!(timeoutMs > 0)) return Promise.resolve(false);
    return new Promise<boolean>((resolve) => {
      const onIdle = () => {
        clearTimeout(timer);
        resolve(true);
      };
      const timer = setTimeout(() => {
        this.off('idle', onIdle);
        resolve(false);
      }, timeoutMs);
      this.once('idle', onIdle);
    });
  }
}
