import { InputError } from '../common/errors.ts';
import { compile, inferenceOf } from '../graph-builder/artifacts/compile.ts';
import { encodeCheckpoint } from '../graph-builder/artifacts/checkpoint.ts';
import type { ModelMeta } from '../graph-builder/artifacts/inference.ts';
import { writeModelCard } from '../graph-builder/artifacts/model-card.ts';
import { lowerForWebGpu } from '../graph-builder/artifacts/webgpu.ts';
import type { TrainStepInterface } from '../graph-builder/artifacts/train-step.ts';
import { initParams, type ParamSet } from '../graph-builder/dsl/init.ts';
import { replaceHead } from '../graph-builder/import/head.ts';
import { elementCount, type Model } from '../graph-builder/model.ts';
import { defaultOptimizer } from '../graph-builder/optimizers.ts';
import { featuresGraph, type HeadSplit, splitAtHead } from '../graph-builder/split.ts';
import { MAX_HEAD_CLASSES } from './web/api.ts';

/** Which graphs the page runs: onnxruntime's CPU kernels' (its wasm build) or its WebGPU build's (web/ort.ts). */
export type PageTarget = 'cpu' | 'webgpu';

/** A compiled train step's graph and its inference graph taking parameters as inputs, for `target`: for 'webgpu' lowered (Sum, LogSoftmax, OneHot, MaxPool Indices; docs/webgpu.md). */
export function stepGraphs(built: ReturnType<typeof compile>, target: PageTarget): { step: Uint8Array; inference: Uint8Array } {
  const lower = target === 'webgpu' ? lowerForWebGpu : (bytes: Uint8Array) => bytes;
  return { step: lower(built.trainStep), inference: lower(built.inference('inputs')) };
}

/** The graphs the page trains a new head of `classes` classes with. */
export interface HeadArtifacts {
  step: Uint8Array;
  /** The head's inference graph taking its parameters per run (`features` in, `probabilities` out). */
  inference: Uint8Array;
  /** The head's first checkpoint: new weights (PyTorch's initialisation, seed 0), zero momentum. */
  state: Uint8Array;
  iface: TrainStepInterface;
  /** The whole model with that head, for the download. */
  whole: Model;
}

/**
 * A served model cut at its head for the page: the features graph (the frozen backbone, uint8
 * pixels in, normalised inside, computed once per example in the browser) and, per class
 * count, a new head's train step. Built on first use and kept (a handful of class counts).
 */
export class PageHead {
  private readonly split: HeadSplit;
  private readonly features = new Map<PageTarget, Uint8Array>();
  private readonly heads = new Map<string, HeadArtifacts>();

  /** Throws an InputError saying why where the model cannot be cut at its head. */
  constructor(
    private readonly model: Model,
    private readonly params: ParamSet,
    private readonly meta: ModelMeta,
  ) {
    this.split = splitAtHead(model);
  }

  /** The features graph: `images` uint8 [N, H, W] (grey) or [N, C, H, W] in, `features` float32 [N, ...] out (lowered for 'webgpu'). */
  featuresGraph(target: PageTarget = 'cpu'): Uint8Array {
    let graph = this.features.get(target);
    if (!graph) {
      graph = featuresGraph(this.split, this.params, this.meta, 'bytes');
      if (target === 'webgpu') graph = lowerForWebGpu(graph);
      this.features.set(target, graph);
    }
    return graph;
  }

  /** The artifacts of a new head of `classes` classes (2..MAX_HEAD_CLASSES), its graphs for `target`. */
  forClasses(classes: number, target: PageTarget = 'cpu'): HeadArtifacts {
    if (!Number.isInteger(classes) || classes < 2 || classes > MAX_HEAD_CLASSES) throw new InputError(`a new head takes 2..${MAX_HEAD_CLASSES} classes, not ${classes}`);
    const key = `${classes}/${target}`;
    const known = this.heads.get(key);
    if (known) return known;
    const head = replaceHead(this.split.head, classes).model;
    const meta = { ...this.meta, classes: Array.from({ length: classes }, (_, i) => String(i)) };
    // A head on fixed features: SGD with momentum, lr and momentum fed per step by the page.
    const built = compile(head, { optimizer: defaultOptimizer('sgd', 0, true), loss: 'cross-entropy', meta, target });
    const made: HeadArtifacts = {
      ...stepGraphs(built, target),
      state: encodeCheckpoint(built.initialCheckpoint(initParams(head, 0), { architecture: this.meta.architecture, step: 0 })),
      iface: built.iface,
      whole: replaceHead(this.model, classes).model,
    };
    this.heads.set(key, made);
    return made;
  }

  /**
   * The whole model with the page's trained head, as an ONNX inference model with `names` for
   * its classes: the backbone's parameters as served, the head's from `head` (by name).
   */
  wholeModel(names: string[], head: ParamSet): Uint8Array {
    const { whole } = this.forClasses(names.length);
    const params: ParamSet = new Map([...this.params].filter(([name]) => !head.has(name)));
    for (const [name, data] of head) params.set(name, data);
    const missing = whole.params.find((p) => params.get(p.name)?.length !== elementCount(p.shape));
    if (missing) throw new InputError(`the fine-tuned head lacks ${missing.name} [${missing.shape.join(', ')}]`);
    return inferenceOf(whole, { ...this.meta, classes: names, extra: writeModelCard({ fineTuned: 'a new head, in the demo page' }) })(params);
  }
}
