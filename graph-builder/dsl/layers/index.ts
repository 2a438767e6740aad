/**
 * Every DSL layer kind: each module exports its DSL function(s) and its LayerKind object(s).
 * Adding a kind is a new module and its line here; the registry (../layers.ts) picks it up.
 */
export * from './activations.ts';
export * from './batch-norm2d.ts';
export * from './conv2d.ts';
export * from './dropout.ts';
export * from './flatten.ts';
export * from './global-avg-pool.ts';
export * from './linear.ts';
export * from './pool.ts';
