/**
 * A setting many pipelines follow (e.g. the ping interval every link pings at), as an Observable
 * that replays the latest value to each subscriber, like RxJS's `BehaviorSubject`. Subscribing and
 * unsubscribing are O(1): a `Subject` keeps its observers in an array and removes one with a linear
 * search, so with 10,000 links each link's stop cost O(links) and stopping them all O(links²).
 */
import { Observable } from 'rxjs';
import type { Subscriber } from 'rxjs';

/** The latest value of a setting and the pipelines that follow it. */
export class LatestValue<T> {
  private current: T;
  private readonly followers = new Set<Subscriber<T>>();
  private completed = false;

  /**
   * Emits the latest value at once, then every value {@link LatestValue.set} passes, until
   * {@link LatestValue.complete}. A subscriber after `complete` gets the last value and completes.
   */
  readonly changes: Observable<T>;

  /** @param initial the value until the first {@link LatestValue.set}. */
  constructor(initial: T) {
    this.current = initial;
    this.changes = new Observable<T>((subscriber) => {
      subscriber.next(this.current);
      if (this.completed) {
        subscriber.complete();
        return undefined;
      }
      this.followers.add(subscriber);
      return () => this.followers.delete(subscriber);
    });
  }

  /** The latest value. */
  get value(): T {
    return this.current;
  }

  /** Number of subscribers following now (a leak check: 0 once every pipeline has stopped). */
  get followerCount(): number {
    return this.followers.size;
  }

  /** Sets the value and passes it to every follower, even when it equals the previous one; ignored after `complete`. */
  set(value: T): void {
    if (this.completed) return;
    this.current = value;
    for (const follower of [...this.followers]) follower.next(value);
  }

  /** Completes every follower; later `set` calls are ignored. */
  complete(): void {
    if (this.completed) return;
    this.completed = true;
    const followers = [...this.followers];
    this.followers.clear();
    for (const follower of followers) follower.complete();
  }
}
