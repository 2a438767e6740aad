/**
 * The model DSL: layers as plain data, written the way PyTorch users write nn.Sequential.
 * The registry below is every module in layers/; to-model.ts turns a list into a Model.
 */
import * as kinds from './layers/index.ts';
import type { LayerKind } from './layers/kind.ts';

export * from './layers/index.ts';

type Exported = (typeof kinds)[keyof typeof kinds];
type Registered = Extract<Exported, LayerKind<{ kind: string }>>;
/** Every layer the DSL knows: the union of the registered kinds' layer types. */
export type Layer = Registered extends infer K ? (K extends LayerKind<infer L> ? L : never) : never;
export type LayerKindName = Layer['kind'];

const isLayerKind = (v: unknown): v is LayerKind<Layer> => typeof v === 'object' && v !== null && 'kind' in v && 'emit' in v && 'infer' in v;

/** The registry: one entry per LayerKind exported from layers/. */
export const LAYER_KINDS: ReadonlyMap<string, LayerKind<Layer>> = new Map((Object.values(kinds) as unknown[]).filter(isLayerKind).map((k) => [k.kind, k]));

export interface Sequential {
  layers: Layer[];
  /** Per-example input [C, H, W] (default 1x28x28, MNIST's); image folders are converted to it. */
  input?: [number, number, number];
}

export function sequential(...layers: (Layer | Layer[])[]): Sequential {
  return { layers: layers.flat() };
}

/** The registered kind of a layer, or undefined for a kind nobody registered. */
export function layerKind(l: { kind?: unknown }): LayerKind<Layer> | undefined {
  return typeof l.kind === 'string' ? LAYER_KINDS.get(l.kind) : undefined;
}

/** How a layer reads in messages and summaries, e.g. `conv2d(1 -> 32, 5x5, pad 2)`. */
export function describeLayer(l: Layer): string {
  return layerKind(l)?.describe(l) ?? `${String(l.kind)}()`;
}
