"""The seed's nested mapping: a task that maps other tasks over its input and waits on them.

``analyze_texts`` makes a task of each plain function with ``task(op)`` and maps it
over the texts from inside its own run.
"""

from __future__ import annotations

import re

from braid import flow, task, wait


def count_words(text: str) -> int:
    """Count the number of words in a text."""
    return len(text.split())


def extract_emails(text: str) -> list[str]:
    """Extract email addresses from a text."""
    return re.findall(r"[\w.+-]+@[\w-]+\.[\w.-]+", text)


@task
def analyze_texts(texts: list[str]) -> dict[str, list[int | list[str]]]:
    futures = {op.__name__: task(op).map(texts) for op in [count_words, extract_emails]}
    wait([f for futs in futures.values() for f in futs])
    return {name: [f.result() for f in futs] for name, futs in futures.items()}


@flow
def run_text_analysis() -> dict[str, list[int | list[str]]]:
    """Analyze a batch of social media posts with multiple operations."""
    results = analyze_texts(
        texts=[
            "Just visited #Paris! Contact me at visitor@example.com #travel #vacation",
            "Working on my new #project. Reach out at developer@example.com if interested!",
            "Happy to announce our company event #celebration #milestone email: events@company.org",
        ]
    )
    print("\nAnalysis Results:")
    print(f"  Word counts: {results['count_words']}")
    print(f"  Extracted emails: {results['extract_emails']}\n")
    return results


if __name__ == "__main__":
    run_text_analysis()
