/**
 * An error the user caused or can fix (bad flag, corrupt file, missing dataset).
 * The CLI prints its message as one line and exits with `exitCode`; anything else is a bug.
 */
export class CnnlabError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode = 1) {
    // Names read from a file (an ONNX value name, a dimension) may hold control characters: escaped, the message stays one line.
    super(message.replace(/[\u0000-\u001f\u007f]/g, (c) => JSON.stringify(c).slice(1, -1)));
    this.name = 'CnnlabError';
    this.exitCode = exitCode;
  }
}

/** A usage error: an invalid flag or argument (exit code 2). */
export class UsageError extends CnnlabError {
  constructor(message: string) {
    super(message, 2);
    this.name = 'UsageError';
  }
}

/** Training produced a non-finite loss; the run's last good checkpoint stays on disk. */
export class DivergedError extends CnnlabError {
  readonly step: number;
  constructor(message: string, step: number) {
    super(message, 1);
    this.name = 'DivergedError';
    this.step = step;
  }
}
