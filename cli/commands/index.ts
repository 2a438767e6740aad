import type { CommandModule } from 'yargs';
import { datasetsCommand } from './datasets.ts';

export const commands: CommandModule[] = [datasetsCommand];
