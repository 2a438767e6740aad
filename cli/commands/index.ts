import type { CommandModule } from 'yargs';
import { datasetsCommand } from './datasets.ts';
import { evalCommands } from './eval.ts';
import { exportCommands } from './export.ts';
import { graphCommands } from './graph.ts';
import { predictCommands } from './predict.ts';
import { serveCommands } from './serve.ts';
import { sweepCommands } from './sweep.ts';
import { trainCommands } from './train.ts';
import { transferCommands } from './transfer.ts';

export const commands: CommandModule[] = [datasetsCommand, ...graphCommands, ...trainCommands, ...evalCommands, ...exportCommands, ...predictCommands, ...serveCommands, ...transferCommands, ...sweepCommands];
