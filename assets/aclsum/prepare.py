"""Rebuild the ACLSum aspect-summarisation files shipped in this folder.

ACLSum (Takeshita et al., NAACL 2024) pairs 250 ACL papers with one human-written sentence per
aspect (challenge, approach, outcome). We ship one row per (paper, aspect) in XSum's schema
(`id`, `document`, `summary`) plus the `aspect`, so the same loader serves both tasks.

    pip download --no-deps aclsum==0.1.2 -d /tmp/aclsum && unzip -o -q /tmp/aclsum/*.whl -d /tmp/aclsum
    python assets/aclsum/prepare.py /tmp/aclsum/aclsum/dataset
"""

import json
import sys
from pathlib import Path

ASPECTS = ("challenge", "approach", "outcome")
SPLITS = {"train": "train", "val": "validation", "test": "test"}


def main(source_dir: str) -> None:
    out_dir = Path(__file__).parent
    for source_split, split in SPLITS.items():
        papers = [json.loads(line) for line in (Path(source_dir) / f"{source_split}.jsonl").read_text().splitlines()]
        with open(out_dir / f"{split}.jsonl", "w") as out:
            for paper in papers:
                document = " ".join(paper["sentences"]["abstract"])
                for aspect in ASPECTS:
                    row = {
                        "id": f"{paper['id']}-{aspect}",
                        "aspect": aspect,
                        "document": document,
                        "summary": paper["summary"][aspect],
                    }
                    out.write(json.dumps(row, ensure_ascii=False) + "\n")
        print(f"{split}: {3 * len(papers)} rows")


if __name__ == "__main__":
    main(sys.argv[1])
