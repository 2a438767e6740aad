import type { CommandModule } from 'yargs';
import { datasetsCommand } from './datasets.ts';
import { graphCommands } from './graph.ts';

export const commands: CommandModule[] = [datasetsCommand, ...graphCommands];
