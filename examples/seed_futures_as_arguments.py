"""The seed's futures-as-arguments example: a downstream task receives the value, not the future.

``print_result`` gets the string ``say_hello`` returned; only the terminal future
needs waiting for, since braid resolves ``say_hello`` before ``print_result`` starts.
"""

from __future__ import annotations

from braid import flow, task


@task
def say_hello(name: str) -> str:
    return f"Hello {name}!"


@task
def print_result(result: object) -> None:
    print(type(result))
    print(result)


@flow(name="hello-flow")
def hello_world() -> None:
    future = say_hello.submit("Marvin")
    print_result.submit(future).wait()


if __name__ == "__main__":
    hello_world()
