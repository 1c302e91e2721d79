import type { GenericAbortSignal } from 'axios';

/**
 * One call's deadline, retries included, handed to axios as the call's signal. Not an
 * AbortController: Node 20 builds every AbortSignal with Object.setPrototypeOf, which kept each
 * one alive through V8's young-generation collections into the old generation (685 B per request
 * under the bench load, a quarter of what still got there). axios takes any signal with
 * `aborted` and the two listener methods, but it must stay a class instance: axios copies a plain
 * object's fields into each call's config, and the copy would never see the deadline pass.
 */
export class Deadline implements GenericAbortSignal {
  aborted = false;
  /** When it passes, on the performance.now() clock. */
  readonly endsAt: number;
  private listeners: (() => void)[] = [];
  private readonly timer: NodeJS.Timeout;

  constructor(ms: number) {
    this.endsAt = performance.now() + ms;
    this.timer = setTimeout(() => {
      this.aborted = true;
      const listeners = this.listeners;
      this.listeners = [];
      for (const listener of listeners) listener();
    }, ms);
  }

  addEventListener(_type: 'abort', listener: () => void): void {
    this.listeners.push(listener);
  }

  removeEventListener(_type: 'abort', listener: () => void): void {
    this.listeners = this.listeners.filter((each) => each !== listener);
  }

  clear(): void {
    clearTimeout(this.timer);
  }
}
