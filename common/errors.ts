/**
 * An error the user caused or can fix (bad flag, corrupt file, missing dataset).
 * The CLI prints its message as one line and exits with `exitCode`; anything else is a bug.
 *
 * Exit codes, one rule everywhere:
 * - 2: what the user gave cannot be used, and changing it fixes the command: a flag or argument
 *   (unknown, malformed, out of range, contradicting another), or a file or folder the user
 *   names, or one read from it (a model, an architecture file, a --data-dir, an image, a run
 *   folder's config), that is missing, unreadable, or not what the command reads (corrupt,
 *   another format, a model of a shape the command cannot use). `UsageError` and `InputError`.
 * - 1: the command was right and doing it failed: the machine (a write refused, a full disk),
 *   the environment (a provider that does not load, a download that fails), or the training
 *   itself (a diverged run). `CnnlabError`'s default.
 * - 130 and 143: stopped by SIGINT or SIGTERM, after saving a checkpoint.
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

/** A file or folder the user gave is missing, unreadable, or not what the command reads (exit code 2, as a bad flag). */
export class InputError extends CnnlabError {
  constructor(message: string) {
    super(message, 2);
    this.name = 'InputError';
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

/**
 * An error met while reading what the user gave (their model, architecture file, run folder), as
 * an InputError: the parsers underneath do not know who supplied the file, the caller does.
 * Anything else (a bug, a DivergedError, an error already exit 2) comes back unchanged.
 */
export function asInputError(err: unknown): unknown {
  return err instanceof CnnlabError && err.exitCode === 1 && !(err instanceof DivergedError) ? new InputError(err.message) : err;
}
