#!/usr/bin/env python
"""service: a background service started and stopped with the app, with a task loop and a timer.

What faust-streaming's ``examples/advanced/service`` does: a
``faust.Service`` registered with ``@app.service`` that prints on start,
start-up done and stop, and runs a background task that wakes up every so
often until the service stops.
"""
import streamnb as faust

app = faust.App(
    'service-example',
    broker='kafka://localhost:9092',
)


@app.service
class Background(faust.Service):

    wakeups = 0
    ticks = 0

    async def on_start(self) -> None:
        print('BACKGROUND SERVICE STARTING')

    async def on_started(self) -> None:
        print('BACKGROUND SERVICE RUNNING')

    async def on_stop(self) -> None:
        print('BACKGROUND SERVICE STOPPING')

    @faust.Service.task
    async def _wake_up(self) -> None:
        while not self.should_stop:
            self.wakeups += 1
            print('BACKGROUND TASK WAKE UP')
            await self.sleep(0.1)

    @faust.Service.timer(0.1)
    async def _tick(self) -> None:
        self.ticks += 1
        self.log.info('tick %d', self.ticks)


if __name__ == '__main__':
    app.main()
