/** The camera (getUserMedia) in a video element, and its frames as images to prepare. */
import { meanColour } from './images.ts';

export class Camera {
  private stream: MediaStream | null = null;
  private readonly canvas = document.createElement('canvas');

  constructor(private readonly video: HTMLVideoElement) {}

  get running(): boolean {
    return this.stream !== null;
  }

  /** Asks for the camera and starts showing it; resolves once frames arrive. */
  async start(): Promise<void> {
    if (this.stream) return;
    this.stream = await navigator.mediaDevices.getUserMedia({ video: { width: 320, height: 240 }, audio: false });
    this.video.srcObject = this.stream;
    await this.video.play();
    while (this.running && (this.video.videoWidth === 0 || this.video.readyState < 2)) await new Promise((r) => setTimeout(r, 20));
  }

  stop(): void {
    for (const t of this.stream?.getTracks() ?? []) t.stop();
    this.stream = null;
    this.video.srcObject = null;
  }

  /** The frame on screen now, as a PNG, and its mean colour. */
  async frame(): Promise<{ blob: Blob; mean: [number, number, number] }> {
    if (!this.stream) throw new Error('the camera is off');
    const c = this.canvas;
    [c.width, c.height] = [this.video.videoWidth, this.video.videoHeight];
    c.getContext('2d', { willReadFrequently: true })!.drawImage(this.video, 0, 0);
    const mean = meanColour(c);
    const blob = await new Promise<Blob | null>((resolve) => c.toBlob(resolve, 'image/png'));
    if (!blob) throw new Error('the camera frame could not be encoded');
    return { blob, mean };
  }
}
