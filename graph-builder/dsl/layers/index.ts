/**
 * Every DSL layer kind: each module exports its DSL function and its LayerKind object.
 * Adding a kind is a new module and its line here; the registry (../layers.ts) picks it up.
 */
export * from './batch-norm2d.ts';
export * from './conv2d.ts';
export * from './dropout.ts';
export * from './flatten.ts';
export * from './global-avg-pool.ts';
export * from './linear.ts';
export * from './log-softmax.ts';
export * from './pool.ts';
export * from './relu.ts';
