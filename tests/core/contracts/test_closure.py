"""The closure contract: a loss closure repeats its random draws; a domain with its own update
protocol refuses a closure method unless it says otherwise."""
import pytest
import torch
from torch import nn

from mtl_platform.contracts import Domain, LossClosure
from mtl_platform.errors import UserError


def test_a_loss_closure_repeats_the_dropout_mask_of_its_first_evaluation():
    torch.manual_seed(0)
    drop = nn.Dropout(0.5)
    x = torch.ones(1000)
    closure = LossClosure(lambda: {"a": drop(x)}, "cpu")
    first = closure()["a"]
    torch.rand(5)  # anything drawn in between does not matter
    assert torch.equal(closure()["a"], first)
    assert not torch.equal(drop(x), first)  # a fresh draw differs: the test can tell


class OwnProtocol(Domain):
    name = "own_protocol"

    def build_tasks(self):
        return []

    def train_step(self, batch, model, engine, optimizers):
        raise AssertionError("not called")


class Accepting(OwnProtocol):
    def check_closure(self, method):
        pass


def test_a_domain_with_its_own_train_step_refuses_a_closure_method_unless_it_accepts():
    with pytest.raises(UserError, match=r"closure: domain 'own_protocol' has its own update protocol"):
        OwnProtocol().check_closure(object())
    Accepting().check_closure(object())
    Domain.check_closure(Plain(), object())


class Plain(Domain):
    name = "plain"

    def build_tasks(self):
        return []
