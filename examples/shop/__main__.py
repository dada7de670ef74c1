"""``python -m examples.shop``: run the Quick start demo."""

from examples.shop.demo import main

if __name__ == "__main__":
    main()
